"""What a gallery or moderation action reports to the member; the central handler shows `.message`.

Every error here is an `InvalidRequest`: the member (or an admin) can fix it, no GPU time was spent.
"""

from __future__ import annotations

from gpu_service.errors import InvalidRequest


class CommunityError(InvalidRequest):
    """A gallery or moderation action that cannot be done; the message tells the member why."""


class BannedWordError(CommunityError):
    """The prompt uses a word this server's admins banned; nothing was generated."""

    def __init__(self, word: str) -> None:
        super().__init__(
            f'Your prompt contains "{word}", which is not allowed on this server. '
            "Nothing was generated; please rephrase."
        )
        self.word = word


class GalleryNotSet(CommunityError):
    def __init__(self, message: str = "An admin must set the gallery channel with /gallery first.") -> None:
        super().__init__(message)


class ShareNotFound(CommunityError):
    def __init__(self, message: str = "That gallery post no longer exists.") -> None:
        super().__init__(message)


class ShareRemoved(CommunityError):
    """A moderator removed the post: it cannot be voted on or shared again."""

    def __init__(self, message: str = "A moderator removed this image from the gallery.") -> None:
        super().__init__(message)


class ImageWithheld(CommunityError):
    def __init__(
        self, message: str = "The safety checker withheld this image, so it can't be shared."
    ) -> None:
        super().__init__(message)
