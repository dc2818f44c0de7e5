"""Gallery, votes and moderation, independent of Discord: the bot and the shell wire it.

- `store`: the SQLite file (settings, banned words, shares, votes);
- `service`: `CommunityService`, the use cases, logging a W&B event for each community action;
- `moderation`: banned-word matching; `access`: who may delete or remove.
"""

from commands.community.errors import (
    BannedWordError, CommunityError, GalleryNotSet, ImageWithheld, ShareNotFound, ShareRemoved,
)
from commands.community.service import (
    CommunityService, EventLog, ShareDecision, TopEntry, VoteOutcome, gallery_caption,
)
from commands.community.store import CommunityStore, Share, message_link

__all__ = [
    "BannedWordError", "CommunityError", "CommunityService", "CommunityStore", "EventLog", "GalleryNotSet",
    "ImageWithheld", "Share", "ShareDecision", "ShareNotFound", "ShareRemoved", "TopEntry", "VoteOutcome",
    "gallery_caption", "message_link",
]
