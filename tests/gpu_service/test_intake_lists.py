"""A link to a text file listing image links (IMAGES_FILE_URL), read line by line from a loopback server.

The lists here are 20 MiB; what is checked is that the intake never holds one whole: it stops reading
once the list names more links than may be used, and its memory stays flat while reading a long one.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gpu_service.errors import IntakeError
from gpu_service.intake import IntakePolicy, Rejection, collect_images
from gpu_service.intake.models import MIB
from gpu_service.intake.url_list import MAX_LINE, read_url_list
from tests.gpu_service.test_intake import PNG, SocketGuard, socket_guard  # noqa: F401 (autouse guard)

LIST_SIZE = 20 * MIB
CHUNK = 64 * 1024
POLICY = IntakePolicy(allow_private=True, min_images=3, max_images=20, max_bytes=64 * MIB, resolution=64)


class ListServer:
    """Serves 20 MiB lists in 64 KiB chunks and counts the bytes it managed to hand to the socket."""

    def __init__(self) -> None:
        self.sent = 0
        self.finished = asyncio.Event()
        self.server = TestServer(self._app(), host="127.0.0.1")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/png", lambda request: web.Response(body=PNG, content_type="image/png"))
        app.router.add_get("/links.txt", self._serve(self._links))
        app.router.add_get("/comments-then-links.txt", self._serve(self._comments_then_links))
        app.router.add_get("/one-long-line.txt", self._serve(lambda: _sized(b"x" * CHUNK)))
        return app

    def _serve(self, body):
        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            try:
                for chunk in body():
                    await response.write(chunk)
                    self.sent += len(chunk)
                await response.write_eof()
            except ConnectionError:
                pass  # the intake hung up: what it had no use for was never sent
            finally:
                self.finished.set()
            return response

        return handler

    def _links(self) -> Iterator[bytes]:
        """Links to the site's one image, one per line, about 20 MiB of them."""
        line = f"{self.url('/png')}\n".encode()
        return _sized(line * (CHUNK // len(line)))

    def _comments_then_links(self) -> Iterator[bytes]:
        """Almost 20 MiB of comment lines, then three links: the whole list must be read."""
        comment = b"# " + b"a photo of my dog " * 50 + b"\n"
        yield from _sized(comment * (CHUNK // len(comment)))
        yield f"{self.url('/png')}\n{self.url('/png')}\n{self.url('/png')}\n".encode()


def _sized(chunk: bytes) -> Iterator[bytes]:
    """`chunk` again and again, LIST_SIZE bytes in all (the same object each time: no memory of its own)."""
    for _ in range(LIST_SIZE // len(chunk)):
        yield chunk


@pytest.fixture
async def lists() -> AsyncIterator[ListServer]:
    server = ListServer()
    await server.server.start_server()
    yield server
    await server.server.close()


async def _peak_memory_of(work) -> tuple[object, int]:
    """What `work` returned (or raised), and the most memory Python held above the start meanwhile."""
    tracemalloc.start()
    try:
        try:
            result: object = await work
        except IntakeError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_list_longer_than_max_images_stops_being_read_at_the_cap(
    lists: ListServer, socket_guard: SocketGuard  # noqa: F811
) -> None:
    """The 21st link refuses the list; the rest of the 20 MiB is never read, and memory stays small."""
    outcome, peak = await _peak_memory_of(collect_images([lists.url("/links.txt")], POLICY))
    assert socket_guard.seen == ["127.0.0.1"]  # test_intake's guard watches this module too
    assert isinstance(outcome, IntakeError)
    assert str(outcome) == "Too many images: the list names more than 20 links (the limit is 20)."
    await asyncio.wait_for(lists.finished.wait(), timeout=10)
    assert lists.sent < LIST_SIZE // 2  # the server was cut off; only socket buffers' worth went out
    assert peak < 2 * MIB


async def test_a_long_list_is_read_with_flat_memory(lists: ListServer) -> None:
    """20 MiB read to the end for its three links, never held: peak memory is a small part of it."""
    outcome, peak = await _peak_memory_of(collect_images([lists.url("/comments-then-links.txt")], POLICY))
    assert not isinstance(outcome, IntakeError), outcome
    assert [image.name for image in outcome.images] == [lists.url("/png")] * 3
    assert lists.sent > LIST_SIZE - CHUNK
    assert peak < 2 * MIB


async def test_a_line_longer_than_max_line_refuses_the_list(lists: ListServer) -> None:
    """A 20 MiB "line" (no newline at all) is refused after MAX_LINE bytes, not buffered whole."""
    link = lists.url("/one-long-line.txt")
    with pytest.raises(IntakeError) as caught:
        await collect_images([link], POLICY)
    assert f"- {link}: line 1 of the list is longer than 4 KiB" in str(caught.value)
    await asyncio.wait_for(lists.finished.wait(), timeout=10)
    assert lists.sent < LIST_SIZE // 2


async def test_a_list_over_max_bytes_is_cut_off(lists: ListServer) -> None:
    policy = IntakePolicy(allow_private=True, min_images=0, max_bytes=MIB, resolution=64)
    result = await collect_images([lists.url("/comments-then-links.txt")], policy)
    assert result.rejected == (Rejection(lists.url("/comments-then-links.txt"), "larger than 1 MiB"),)


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.parametrize(
    ("parts", "links"),
    [
        ((b"http://a.test/1.png\nhttp://a.test/2.png\n",), ["http://a.test/1.png", "http://a.test/2.png"]),
        ((b"http://a.te", b"st/1.png\r\nhttp://a.test/2", b".png"), ["http://a.test/1.png", "http://a.test/2.png"]),
        ((b"\xef\xbb\xbfhttp://a.test/1.png\n# not this\n\n",), ["http://a.test/1.png"]),  # byte-order mark
        ((b"http://a.test/1.png http://a.test/2.png\n",), ["http://a.test/1.png", "http://a.test/2.png"]),
        ((b"# only comments\n",), []),
    ],
)
async def test_read_url_list_joins_lines_split_across_chunks(parts: tuple[bytes, ...], links: list[str]) -> None:
    assert await read_url_list(_chunks(*parts), max_links=5) == links


async def test_read_url_list_stops_at_the_line_that_passes_the_cap() -> None:
    """The generator is not asked for anything after the line with the 3rd link (cap 2)."""
    asked: list[int] = []

    async def numbered() -> AsyncIterator[bytes]:
        for index in range(1000):
            asked.append(index)
            yield f"http://a.test/{index}.png\n".encode()

    with pytest.raises(IntakeError, match=r"more than 2 links \(the limit is 2\)"):
        await read_url_list(numbered(), max_links=2)
    assert asked == [0, 1, 2]


async def test_read_url_list_accepts_a_line_of_exactly_max_line_bytes() -> None:
    line = b"http://a.test/" + b"a" * (MAX_LINE - len(b"http://a.test/"))
    assert await read_url_list(_chunks(line + b"\n"), max_links=1) == [line.decode()]
    with pytest.raises(ValueError, match="line 1 of the list is longer than 4 KiB"):
        await read_url_list(_chunks(line + b"a\n"), max_links=1)

