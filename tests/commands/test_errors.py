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


@pytest.mark.parametrize(
    ("error", "hidden", "kept"),
    [
        (TrainingFailed("Training j1 failed (KeyError: 'hf_Secret123'). Running the same job again resumes."),
         ["hf_Secret123", "KeyError"], "Training j1 failed. Running the same job again resumes."),
        (TrainingFailed("Training j1 failed (OSError: [Errno 2] (nested) /srv/data/x.bin). Try again."),
         ["/srv/data", "Errno", "nested"], "Training j1 failed. Try again."),
        (RemoteError("The model for 'q' v3 is damaged (cannot open /data/registry/q/v3/lora.safetensors)."),
         ["/data/registry", "lora.safetensors"], "The model for 'q' v3 is damaged (cannot open a file)."),
        (InvalidRequest("job j has no weights in C:\\data\\staging\\j"), ["C:\\data", "staging"], "no weights in a file"),
    ],
)
def test_exception_text_and_file_paths_become_a_reference_the_log_carries(error, hidden, kept):
    reply = reply_for(error)
    assert kept in reply.text and reply.reference and f"`{reply.reference}`" in reply.text
    assert reply.unexpected  # so the caller logs the original with the reference
    assert not [secret for secret in hidden if secret in reply.text]


def test_links_lose_their_password_and_query_but_stay_readable():
    error = IntakeError("Got 0 usable images\n- https://bob:hunter2@example.com/a.png?token=s3cr3t: not found")
    reply = reply_for(error)
    assert "https://example.com/a.png: not found" in reply.text
    assert "hunter2" not in reply.text and "s3cr3t" not in reply.text and not reply.unexpected


@pytest.mark.parametrize("text", ["The image engine failed (OOM).", "Use 3/4 of a/b, or https://example.com/x/y."])
def test_plain_service_messages_pass_unchanged(text):
    reply = reply_for(RemoteError(text))
    assert reply.text == text and not reply.unexpected
