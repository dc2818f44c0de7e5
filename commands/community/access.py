"""Who may do what with a generation or a gallery post: pure rules, the bot supplies the facts."""

from __future__ import annotations

DELETE_REFUSED = "Only the member who asked for these images, or a moderator, can delete them."
REMOVE_REFUSED = "Only moderators (Manage Messages) can remove gallery posts."


def can_delete(requester_id: str, user_id: str, has_manage_messages: bool) -> bool:
    """The requester may delete their own generation message; so may members with Manage Messages."""
    return has_manage_messages or (bool(requester_id) and requester_id == user_id)


def can_remove_post(has_manage_messages: bool) -> bool:
    """Removing a gallery post (and its place in /top) is for moderators only, creators included."""
    return has_manage_messages
