"""The central mapping from errors to what members read."""

from __future__ import annotations

import pytest

from commands.community import BannedWordError, GalleryNotSet, ImageWithheld
from commands.errors import reply_for
from commands.permissions import NotAuthorized
from commands.queue import LimitReached
from gpu_service.errors import (
    GpuBusy,
    GpuTimeout,
    IntakeError,
    InvalidRequest,
    MissingCredentials,
    ModelNotDeployed,
    PromptTooLong,
    RemoteError,
    SubjectNotFound,
    TrainingFailed,
)


@pytest.mark.parametrize(
    ("error", "expected", "ephemeral"),
    [
        (LimitReached("You already have 4 requests"), "You already have 4 requests", True),
        (NotAuthorized("Only admins can train"), "Only admins can train", True),
        (PromptTooLong("The prompt is 90 tokens; the limit is 77."), "Shorten the prompt", True),
        (InvalidRequest("`count`: at most 4"), "`count`: at most 4", True),
        (SubjectNotFound("No subject `cat`."), "No subject `cat`.", True),
        (IntakeError("Got 1 usable image\n- a.png: not an image"), "- a.png: not an image", True),
        (GpuBusy("A training runs."), "try again in a minute", False),
        (GpuTimeout("No answer in 180 s."), "took too long", False),
        (ModelNotDeployed("App not found."), "an admin needs to deploy it", False),
        (MissingCredentials("No Modal token."), "credentials", False),
        (RemoteError("The image engine failed (OOM)."), "The image engine failed (OOM).", False),
        (TrainingFailed("Loss became NaN."), "Loss became NaN.", False),
        (TimeoutError(), "timed out", False),
    ],
)
def test_known_errors_become_messages_a_member_can_act_on(error, expected, ephemeral):
    reply = reply_for(error)
    assert expected in reply.text
    assert reply.ephemeral is ephemeral and not reply.unexpected
    if hasattr(error, "message"):
        assert error.message in reply.text  # the service's own words are never lost


def test_unexpected_errors_get_an_apology_with_a_reference_and_no_details():
    reply = reply_for(KeyError("secret internal detail"))
    assert reply.unexpected and reply.reference
    assert reply.reference in reply.text and "secret" not in reply.text
    assert reply.text.startswith("Sorry")
    assert reply_for(KeyError("x")).reference != reply.reference


@pytest.mark.parametrize("error", [BannedWordError("dragon"), GalleryNotSet(), ImageWithheld()])
def test_gallery_and_moderation_refusals_are_their_own_words_ephemerally(error):
    reply = reply_for(error)
    assert reply.text == error.message and reply.ephemeral and not reply.unexpected
