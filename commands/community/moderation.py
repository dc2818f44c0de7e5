"""Banned-word matching: case-insensitive, on whole words, with a few cheap evasions caught.

A banned entry is one word or a short phrase, stored normalized: case-folded, accents stripped, words
joined by single spaces. A prompt matches when the entry's words appear as consecutive whole words in
any of these readings of one text field:

1. its words (runs of letters and digits; any punctuation or space separates words);
2. each space-separated chunk with its punctuation dropped, so "b.a.d" and "ba-d" read "bad";
3. its words with runs of two or more single letters joined, so "b a d" reads "bad".

A word inside another word never matches: banning "ass" does not refuse "class". Not handled, on
purpose: plurals and other inflections (ban them too), leetspeak, repeated letters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence

MAX_WORD_LENGTH = 64
MAX_WORDS_PER_GUILD = 500
_WORD = re.compile(r"[^\W_]+")
_NOT_WORD = re.compile(r"[\W_]+")


def _fold(text: str) -> str:
    if text.isascii():  # most prompts: nothing to decompose, and casefold is lower
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def normalize_word(word: str) -> str:
    """The stored form of a banned entry: "" when it has no letter or digit."""
    return " ".join(_WORD.findall(_fold(word)))


def parse_word_list(text: str) -> list[str]:
    """What an admin typed ("a, b\\nsome phrase") as separate entries; phrases keep their spaces."""
    return [part.strip() for part in re.split(r"[,;\n]", text) if part.strip()]


def _readings(text: str) -> Iterator[list[str]]:
    folded = _fold(text)
    words = _WORD.findall(folded)
    yield words
    yield [squeezed for chunk in folded.split() if (squeezed := _NOT_WORD.sub("", chunk))]
    yield _join_single_letters(words)


def _join_single_letters(words: Sequence[str]) -> list[str]:
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        joined.extend(["".join(run)] if len(run) > 1 else run)
        run = []
        if word:
            joined.append(word)
    return joined


class BannedList:
    """One guild's banned entries, compiled once: a trie over words, so checking a text costs time
    linear in its length whatever the number of entries (each start walks at most one entry's words)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(dict.fromkeys(entry for entry in entries if entry))
        self._rank = {entry: rank for rank, entry in enumerate(self.entries)}
        self._root: dict = {}
        for entry in self.entries:
            node = self._root
            for word in entry.split():
                node = node.setdefault(word, {})
            node[_END] = entry

    def __bool__(self) -> bool:
        return bool(self.entries)

    def find(self, *texts: str) -> str | None:
        """The first entry (in the list's order) found in the first text that has one; None when clean."""
        if not self.entries:
            return None
        for text in filter(None, texts):  # an empty postfix or negative prompt has nothing to find
            searched: list[list[str]] = []
            for words in _readings(text):
                if words in searched:  # most prompts read the same every way
                    continue
                searched.append(words)
                found = self.find_in_words(words)
                if found is not None:
                    return found
        return None

    def find_in_words(self, words: Sequence[str]) -> str | None:
        """The entry of lowest rank that appears as consecutive whole words."""
        best: str | None = None
        size = len(words)
        for start in range(size):
            node = self._root
            position = start
            while position < size and (node := node.get(words[position])) is not None:
                position += 1
                entry = node.get(_END)
                if entry is not None and (best is None or self._rank[entry] < self._rank[best]):
                    best = entry
        return best


_END = ""  # a trie key no word can be: words hold at least one letter or digit


def find_banned(banned: Iterable[str], *texts: str) -> str | None:
    """The first banned entry found in any of the texts, as stored; None when all are clean."""
    return BannedList(banned).find(*texts)
