"""Prompt building, shared by generation and training. No torch: the bot side uses it too."""

from __future__ import annotations


def build_prompt(prefix: str, instance_phrase: str, postfix: str = "") -> str:
    """`<prefix> <instance phrase> <postfix>`, whitespace collapsed; nothing quoted into it.

    The phrase is never wrapped in quote characters: the text encoder would read them as part of the
    subject, and plain words are what DreamBooth trains on.
    """
    return " ".join(" ".join(part.split()) for part in (prefix, instance_phrase, postfix) if part.strip())
