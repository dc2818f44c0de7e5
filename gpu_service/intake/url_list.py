"""A text file listing image links (IMAGES_FILE_URL, or one link pasted in /train), read as it streams.

The file comes from anywhere, so it is never held whole: lines are taken one at a time, a line may be
at most MAX_LINE bytes, and reading stops as soon as the list names more links than may be used.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from gpu_service.errors import IntakeError
from gpu_service.intake.models import describe_size

MAX_LINE = 4096  # bytes; a link longer than this is no photo's address


def parse_url_list(text: str) -> list[str]:
    """The links in a text file: split on whitespace; blank lines and lines starting with '#' skipped."""
    links: list[str] = []
    for line in text.splitlines():
        links.extend(links_in_line(line))
    return links


def links_in_line(line: str) -> list[str]:
    line = line.strip().lstrip("\ufeff")  # a byte-order mark may start the file
    return [] if not line or line.startswith("#") else line.split()


async def read_url_list(chunks: AsyncIterable[bytes], max_links: int) -> list[str]:
    """The links in a streamed text file, at most `max_links` of them.

    Raises IntakeError as soon as a line takes the count past `max_links` (the rest is never read),
    and ValueError(reason) for a line longer than MAX_LINE bytes.
    """
    links: list[str] = []
    async for line in _lines(chunks):
        links.extend(links_in_line(line))
        if len(links) > max_links:
            raise IntakeError(
                f"Too many images: the list names more than {max_links} links (the limit is {max_links})."
            )
    return links


async def _lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Decoded lines, holding no more than one chunk and one unfinished line at a time."""
    pending = b""
    number = 0
    async for chunk in chunks:
        *complete, pending = (pending + chunk).split(b"\n")
        for line in complete:
            number += 1
            yield _decoded(line, number)
        _check_length(pending, number + 1)
    if pending:
        yield _decoded(pending, number + 1)


def _decoded(line: bytes, number: int) -> str:
    _check_length(line, number)
    return line.decode("utf-8", errors="replace")


def _check_length(line: bytes, number: int) -> None:
    if len(line) > MAX_LINE:
        raise ValueError(f"line {number} of the list is longer than {describe_size(MAX_LINE)}")
