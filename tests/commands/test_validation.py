"""Refusals of request fields read as sentences: the field, what it accepts, never the member's input."""

from __future__ import annotations

import annotated_types
import pytest

from commands.validation import build
from gpu_service.errors import InvalidRequest
from gpu_service.schemas import GenerateRequest, ImageSource, TrainRequest

GENERATE = dict(prompt_prefix="a painting of a", subject="qwerty")
TRAIN = dict(job_id="job-1", subject="qwerty", instance_phrase="qwerty dog", class_phrase="dog",
             images=(ImageSource(url="https://example.com/a.png"),))
LONG = "z" * 3000

CASES = [
    (GenerateRequest, "prompt_prefix", LONG, "Your `prompt_prefix` is 3,000 characters; the limit is 1,000."),
    (GenerateRequest, "prompt_postfix", LONG, "Your `prompt_postfix` is 3,000 characters; the limit is 1,000."),
    (GenerateRequest, "negative_prompt", LONG, "Your `negative_prompt` is 3,000 characters; the limit is 1,000."),
    (GenerateRequest, "subject", "Not A Subject", "`subject` may use a-z, 0-9, _ and -, up to 32 characters."),
    (GenerateRequest, "subject", "s" * 300, "`subject` may use a-z, 0-9, _ and -, up to 32 characters."),
    (GenerateRequest, "subject_version", 0, "`subject_version` must be at least 1."),
    (GenerateRequest, "seed", -1, "`seed` must be a whole number from 0 to 4294967295."),
    (GenerateRequest, "seed", 2**32, "`seed` must be a whole number from 0 to 4294967295."),
    (GenerateRequest, "seed", "lucky", "`seed` must be a whole number from 0 to 4294967295."),
    (GenerateRequest, "count", 0, "`count` can be 1 to 4."),
    (GenerateRequest, "count", 5, "`count` can be 1 to 4."),
    (GenerateRequest, "steps", 0, "`steps` can be 1 to 100."),
    (GenerateRequest, "steps", 101, "`steps` can be 1 to 100."),
    (GenerateRequest, "guidance", -0.5, "`guidance` can be 0 to 30."),
    (GenerateRequest, "guidance", 31, "`guidance` can be 0 to 30."),
    (GenerateRequest, "width", 32, "`width` can be 64 to 1024."),
    (GenerateRequest, "width", 2048, "`width` can be 64 to 1024."),
    (GenerateRequest, "width", 100, "`width` must be a multiple of 8"),
    (GenerateRequest, "height", 32, "`height` can be 64 to 1024."),
    (GenerateRequest, "height", 2048, "`height` can be 64 to 1024."),
    (GenerateRequest, "init_image", b"x" * (20 * 1024 * 1024 + 1),
     "Your `init_image` is 20,971,521 bytes; the limit is 20,971,520."),
    (GenerateRequest, "strength", 0.0, "`strength` must be more than 0 and at most 1."),
    (GenerateRequest, "strength", 1.5, "`strength` must be more than 0 and at most 1."),
    (GenerateRequest, "colour", "red", "`colour` is not an option here."),
    (TrainRequest, "job_id", "no spaces allowed", "`job_id` may use A-Z, a-z, 0-9, _ and -, up to 64 characters."),
    (TrainRequest, "subject", "../etc", "`subject` may use a-z, 0-9, _ and -, up to 32 characters."),
    (TrainRequest, "instance_phrase", "", "`instance_phrase` can't be empty."),
    (TrainRequest, "instance_phrase", LONG, "Your `instance_phrase` is 3,000 characters; the limit is 200."),
    (TrainRequest, "class_phrase", "", "`class_phrase` can't be empty."),
    (TrainRequest, "class_phrase", LONG, "Your `class_phrase` is 3,000 characters; the limit is 200."),
    (TrainRequest, "images", (), "`images` needs at least 1 item(s)."),
    (TrainRequest, "images", (ImageSource(url="https://example.com/a.png"),) * 22, "`images` can have at most 21"),
    (TrainRequest, "steps", 0, "`steps` can be 1 to 5000."),
    (TrainRequest, "steps", 5001, "`steps` can be 1 to 5000."),
]
_VALID = {GenerateRequest: GENERATE, TrainRequest: TRAIN}
_CONSTRAINTS = (annotated_types.Ge, annotated_types.Gt, annotated_types.Le, annotated_types.Lt,
                annotated_types.MinLen, annotated_types.MaxLen)


@pytest.mark.parametrize(("model", "field", "value", "expected"), CASES)
def test_a_bad_field_becomes_a_sentence_that_names_it_and_what_it_accepts(model, field, value, expected):
    with pytest.raises(InvalidRequest) as caught:
        build(model, **{**_VALID[model], field: value})
    message = caught.value.message
    assert expected in message
    assert "Input should" not in message and "got '" not in message and "pattern" not in message
    assert len(message) < 200 and LONG[:100] not in message


def test_every_constrained_field_of_the_contract_has_a_case():
    covered = {(model, field) for model, field, _, _ in CASES}
    for model in (GenerateRequest, TrainRequest):
        for name, info in model.model_fields.items():
            constrained = any(isinstance(rule, _CONSTRAINTS) or hasattr(rule, "pattern") for rule in info.metadata)
            if constrained:
                assert (model, name) in covered, f"{model.__name__}.{name} has a constraint but no case"


def test_several_bad_fields_give_one_line_each():
    with pytest.raises(InvalidRequest) as caught:
        build(GenerateRequest, **GENERATE, count=9, steps=500)
    assert caught.value.message.splitlines() == ["`count` can be 1 to 4.", "`steps` can be 1 to 100."]
