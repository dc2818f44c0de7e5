"""The contract refuses every out-of-range field with a message that names it."""

from __future__ import annotations

import pickle

import pytest

from commands.validation import build
from gpu_service import errors
from gpu_service.schemas import GenerateRequest

VALID = dict(prompt_prefix="a painting of a", subject="qwerty")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("count", 0), ("count", 5), ("steps", 0), ("steps", 101), ("guidance", -0.5), ("guidance", 31),
        ("width", 65), ("width", 32), ("width", 2048), ("height", 100), ("seed", -1), ("seed", 2**32),
        ("subject", "Not A Subject"), ("subject", "../etc"), ("prompt_prefix", "x" * 1001),
        ("negative_prompt", "y" * 1001), ("strength", 0.0), ("subject_version", 0),
    ],
)
def test_out_of_range_field_is_refused_naming_it(field, value):
    with pytest.raises(errors.InvalidRequest) as caught:
        build(GenerateRequest, **{**VALID, field: value})
    assert f"`{field}`" in str(caught.value)


def test_unknown_field_is_refused():
    with pytest.raises(errors.InvalidRequest, match="`colour`"):
        build(GenerateRequest, **VALID, colour="red")


def test_valid_request_keeps_defaults():
    request = build(GenerateRequest, **VALID, width=512, height=768, count=4)
    assert (request.count, request.width, request.height, request.steps) == (4, 512, 768, 25)


@pytest.mark.parametrize(
    "error_type",
    [errors.InvalidRequest, errors.PromptTooLong, errors.GpuBusy, errors.GpuTimeout, errors.ModelNotDeployed,
     errors.MissingCredentials, errors.RemoteError, errors.TrainingFailed, errors.IntakeError],
)
def test_errors_survive_pickling_with_their_message(error_type):
    copy = pickle.loads(pickle.dumps(error_type("the reason")))
    assert type(copy) is error_type and str(copy) == "the reason" and copy.message == "the reason"


def test_requests_and_results_pickle():
    request = build(GenerateRequest, **VALID, init_image=b"\x89PNG")
    assert pickle.loads(pickle.dumps(request)) == request
