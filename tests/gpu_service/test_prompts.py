from __future__ import annotations

import pytest

from gpu_service.prompts import build_prompt


@pytest.mark.parametrize(
    ("prefix", "phrase", "postfix", "expected"),
    [
        ("a gorgeous painting of a", "qwerty dog", "in a psychedelic 1970s style",
         "a gorgeous painting of a qwerty dog in a psychedelic 1970s style"),
        ("  a   photo\nof a ", "qwerty  dog", "", "a photo of a qwerty dog"),
        ("", "qwerty dog", "at night", "qwerty dog at night"),
        ("a photo of a", "qwerty dog", "   ", "a photo of a qwerty dog"),
    ],
)
def test_prompt_is_prefix_phrase_postfix_with_whitespace_normalised(prefix, phrase, postfix, expected):
    assert build_prompt(prefix, phrase, postfix) == expected


def test_nothing_is_quoted_into_the_prompt():
    assert '"' not in build_prompt("a photo of a", "qwerty dog")
