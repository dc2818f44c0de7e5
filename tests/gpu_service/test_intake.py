"""Image intake end to end against a loopback aiohttp server.

Links to "public" hosts use a stub resolver that answers PUBLIC; the `connections` guard reroutes that
address to 127.0.0.1 at the socket, and refuses every other non-loopback address, so no test can touch
a real network. That lets the address rule stay on (allow_private=False) in the redirect tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import ipaddress
import itertools
import random
import re
import socket
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image, ImageFile

from gpu_service.errors import IntakeError
from gpu_service.intake import (
    IntakeImage,
    IntakePolicy,
    Rejection,
    collect_images,
    parse_url_list,
    prepare_image,
)
from gpu_service.schemas import ImageSource
from tests.gpu_service.test_intake_addresses import SPECIAL_ADDRESSES, StubResolver

PUBLIC = "93.184.216.34"  # never really reached: the guard reroutes it to loopback
RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)
LOCAL = IntakePolicy(allow_private=True, min_images=1, timeout_s=5.0, resolution=64)
STRICT = IntakePolicy(allow_private=False, min_images=1, timeout_s=5.0, resolution=64)


# ---------------------------------------------------------------- images


def encode(image: Image.Image, image_format: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **params)
    return out.getvalue()


def three_bands(size: tuple[int, int] = (96, 64)) -> Image.Image:
    """Red, green, blue vertical bands: the centre crop keeps green in the middle."""
    width, height = size
    image = Image.new("RGB", size, RED)
    image.paste(GREEN, (width // 3, 0, 2 * width // 3, height))
    image.paste(BLUE, (2 * width // 3, 0, width, height))
    return image


def noisy_jpeg() -> bytes:
    noise = random.Random(0).randbytes(128 * 128 * 3)
    return encode(Image.frombytes("RGB", (128, 128), noise), "JPEG", quality=90)


def rotated_jpeg() -> bytes:
    """Stored 80 x 40, red left, blue right; EXIF orientation 6 says: show it turned 90 degrees clockwise."""
    image = Image.new("RGB", (80, 40), RED)
    image.paste(BLUE, (40, 0, 80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR (with a valid CRC) claims width x height pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG = encode(three_bands(), "PNG")
JPEG = encode(three_bands(), "JPEG", quality=95)
WEBP = encode(three_bands(), "WEBP", lossless=True)
TRUNCATED_JPEG = noisy_jpeg()[:-4000]
HTML = b"<!DOCTYPE html><html><body>Sign in to see this image</body></html>"


def decoded(image: IntakeImage) -> Image.Image:
    return Image.open(io.BytesIO(image.png))


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour))


# ---------------------------------------------------------------- network fixtures


class SocketGuard:
    """Every address a socket connected to. Only loopback is reachable; PUBLIC is rerouted there.

    Links to PUBLIC use the web port 80 (the port rule is on when private URLs are not allowed); the
    guard sends them to the loopback site's port instead.
    """

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.site_port: int | None = None

    def reroute(self, sock: socket.socket, address):
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return address
        self.seen.append(address[0])
        if address[0] == PUBLIC:
            return ("127.0.0.1", self.site_port or address[1])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(f"test guard: refused a connection to {address[0]}")
        return address


@pytest.fixture(autouse=True)
def socket_guard(monkeypatch: pytest.MonkeyPatch) -> SocketGuard:
    guard = SocketGuard()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    monkeypatch.setattr(socket.socket, "connect", lambda s, a: real_connect(s, guard.reroute(s, a)))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda s, a: real_connect_ex(s, guard.reroute(s, a)))
    return guard


@pytest.fixture
def connections(socket_guard: SocketGuard) -> list[str]:
    """Every address a socket connected to, in order."""
    return socket_guard.seen


class Site:
    """The loopback server, the paths it was asked for, and how to link to it."""

    def __init__(self, server: TestServer, hits: list[str]) -> None:
        self.server, self.hits = server, hits

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """A link to the site itself (a loopback address: needs allow_private)."""
        return f"http://{host}:{self.port}{path}"

    def public_url(self, path: str, host: str) -> str:
        """A link on port 80 to a name the test's resolver answers with PUBLIC; the guard brings it here."""
        return f"http://{host}{path}"


async def _stream(request: web.Request, content_type: str, chunks, pause: float = 0.0):
    """A chunked response (no Content-Length) that stops when the client goes away."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(pause)
    except ConnectionError:
        pass
    return response


def _routes(hits: list[str]) -> web.Application:
    def serve(body: bytes, content_type: str, status: int = 200):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=body, content_type=content_type, status=status)

        return handler

    def stream(chunks: Iterable[bytes], pause: float = 0.0):
        async def handler(request: web.Request) -> web.StreamResponse:
            return await _stream(request, "image/png", chunks, pause)

        return handler

    async def to_metadata(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def to_other_port(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://{request.host}:8080/png")

    async def hop(request: web.Request) -> web.Response:
        left, final_host = int(request.match_info["left"]), request.match_info["final"]
        if left == 0:
            raise web.HTTPFound(f"http://{final_host}:{request.url.port}/png")  # the port asked for
        raise web.HTTPFound(f"/hop/{left - 1}/{final_host}")

    async def link_list(request: web.Request) -> web.Response:
        paths = request.query["paths"].split(",")
        text = "# training photos\n\n" + "\n".join(f"http://{request.host}/{p}" for p in paths)
        return web.Response(text=text, content_type="text/plain")

    @web.middleware
    async def record(request: web.Request, handler):
        hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[record])
    app.router.add_get("/png", serve(PNG, "image/png"))
    app.router.add_get("/jpeg", serve(JPEG, "image/jpeg"))
    app.router.add_get("/webp", serve(WEBP, "image/webp"))
    app.router.add_get("/png-as-html", serve(PNG, "text/html"))
    app.router.add_get("/page", serve(HTML, "text/html"))
    app.router.add_get("/truncated.jpg", serve(TRUNCATED_JPEG, "image/jpeg"))
    app.router.add_get("/list.txt", link_list)
    app.router.add_get("/hop/{left}/{final}", hop)
    app.router.add_get("/missing", serve(b"", "text/plain", status=404))
    app.router.add_get("/to-metadata", to_metadata)
    app.router.add_get("/to-other-port", to_other_port)
    app.router.add_get("/huge", stream(itertools.repeat(b"\x89PNG" + bytes(65532))))  # endless
    app.router.add_get("/drip", stream([PNG[i : i + 1] for i in range(400)], pause=0.05))
    return app


@pytest.fixture
async def site(socket_guard: SocketGuard) -> AsyncIterator[Site]:
    hits: list[str] = []
    server = TestServer(_routes(hits), host="127.0.0.1")
    await server.start_server()
    socket_guard.site_port = server.port
    yield Site(server, hits)
    await server.close()


def public_resolver(*names: str) -> StubResolver:
    return StubResolver({name: [PUBLIC] for name in names} | {"internal.test": ["10.0.0.1"]})


# ---------------------------------------------------------------- fetching


async def test_png_jpeg_and_webp_are_fetched_and_prepared(site: Site, connections: list[str]) -> None:
    """Each comes back as a resolution-sized RGB PNG, centre-cropped, hashed as received."""
    result = await collect_images([site.url("/png"), site.url("/jpeg"), site.url("/webp")], LOCAL)
    assert [image.name for image in result.images] == [site.url(p) for p in ("/png", "/jpeg", "/webp")]
    assert result.rejected == ()
    for image, original in zip(result.images, (PNG, JPEG, WEBP)):
        out = decoded(image)
        assert (out.format, out.mode, out.size) == ("PNG", "RGB", (64, 64))
        assert near(out.getpixel((32, 32)), GREEN)  # the middle band survives the crop
        assert image.sha256 == hashlib.sha256(original).hexdigest()
    assert set(connections) == {"127.0.0.1"}  # the guard saw the connections: it is really in place


async def test_format_comes_from_the_bytes_not_the_content_type(site: Site) -> None:
    """Decision: a real PNG labelled text/html is accepted; the bytes are decoded and checked anyway."""
    result = await collect_images([site.url("/png-as-html")], LOCAL)
    assert len(result.images) == 1


async def test_html_page_is_rejected_with_a_clear_reason(site: Site) -> None:
    result = await collect_images([site.url("/png"), site.url("/page")], LOCAL)
    assert result.rejected == (Rejection(site.url("/page"), "not an image (text/html page)"),)


async def test_chunked_body_over_max_bytes_is_cut_off_while_streaming(site: Site) -> None:
    """No Content-Length to trust, and the body never ends: only the running total can stop it."""
    policy = IntakePolicy(allow_private=True, min_images=0, max_bytes=128 * 1024, timeout_s=5, resolution=64)
    started = time.monotonic()
    result = await collect_images([site.url("/huge")], policy)
    assert result.rejected == (Rejection(site.url("/huge"), "larger than 128 KiB"),)
    assert time.monotonic() - started < 2


async def test_slow_drip_is_cut_off_by_the_total_time_limit(site: Site) -> None:
    """The good image is kept; the one still dripping when time runs out is rejected."""
    policy = IntakePolicy(allow_private=True, min_images=1, timeout_s=1.0, resolution=64)
    started = time.monotonic()
    result = await collect_images([site.url("/png"), site.url("/drip")], policy)
    assert time.monotonic() - started < 2.5
    assert [image.name for image in result.images] == [site.url("/png")]
    assert result.rejected == (Rejection(site.url("/drip"), "timed out (all images must arrive within 1 s)"),)


async def test_truncated_jpeg_is_rejected(site: Site) -> None:
    result = await collect_images([site.url("/png"), site.url("/truncated.jpg")], LOCAL)
    assert result.rejected == (Rejection(site.url("/truncated.jpg"), "truncated JPEG"),)


async def test_http_error_status_is_reported(site: Site) -> None:
    result = await collect_images([site.url("/png"), site.url("/missing")], LOCAL)
    assert result.rejected == (Rejection(site.url("/missing"), "the server answered HTTP 404"),)


# ---------------------------------------------------------------- addresses and redirects


@pytest.mark.parametrize(
    "answers", [["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"], ["::ffff:127.0.0.1"], [PUBLIC, "10.0.0.1"]]
)
async def test_private_address_is_refused_before_any_request(
    site: Site, connections: list[str], answers: list[str]
) -> None:
    """With the rule on, a host answering a private address gets no connection and no request at all."""
    resolver = StubResolver({"evil.test": answers})
    link = site.public_url("/png", host="evil.test")
    result = await collect_images([link], IntakePolicy(min_images=0), resolver=resolver)
    assert "points to" in result.rejected[0].reason
    assert site.hits == []
    assert connections == []


OTHER_PORT = "only the web ports 80 and 443 are allowed (this link uses port 8080)"


@pytest.mark.parametrize(("answer", "kind"), SPECIAL_ADDRESSES)
async def test_special_purpose_addresses_get_no_connection(
    connections: list[str], answer: str, kind: str
) -> None:
    """Each IANA special-purpose block (and each metadata address) is refused before any socket opens."""
    resolver = StubResolver({"photos.test": [answer]})
    result = await collect_images(["http://photos.test/a.png"], IntakePolicy(min_images=0), resolver=resolver)
    assert re.search(rf"^photos\.test points to .*{kind}", result.rejected[0].reason)
    assert connections == []


async def test_a_port_other_than_80_or_443_gets_no_lookup_and_no_connection(
    site: Site, connections: list[str]
) -> None:
    resolver = public_resolver("cdn.test")
    link = "http://cdn.test:8080/png"
    result = await collect_images([link], IntakePolicy(min_images=0), resolver=resolver)
    assert result.rejected == (Rejection(link, OTHER_PORT),)
    assert resolver.calls == []
    assert connections == []


async def test_a_redirect_to_another_port_is_refused_before_connecting(
    site: Site, connections: list[str]
) -> None:
    link = site.public_url("/to-other-port", host="cdn.test")
    result = await collect_images([link], IntakePolicy(min_images=0), resolver=public_resolver("cdn.test"))
    assert result.rejected == (Rejection(link, OTHER_PORT),)
    assert connections == [PUBLIC]  # the first hop only
    assert site.hits == ["/to-other-port"]


async def test_three_hop_redirect_chain_is_followed(site: Site, connections: list[str]) -> None:
    resolver = public_resolver("cdn.test")
    result = await collect_images([site.public_url("/hop/2/cdn.test", host="cdn.test")], STRICT, resolver=resolver)
    assert len(result.images) == 1
    assert site.hits == ["/hop/2/cdn.test", "/hop/1/cdn.test", "/hop/0/cdn.test", "/png"]
    assert set(connections) == {PUBLIC}  # the checked address, not a lookup of its own


async def test_redirect_to_a_private_address_is_refused_before_connecting(
    site: Site, connections: list[str]
) -> None:
    """Every hop is re-checked: the last one points at 10.0.0.1 and is never contacted."""
    resolver = public_resolver("cdn.test")
    link = site.public_url("/hop/2/internal.test", host="cdn.test")
    result = await collect_images([link], IntakePolicy(min_images=0), resolver=resolver)
    assert result.rejected == (
        Rejection(link, "internal.test points to a private network address (10.0.0.1)"),
    )
    assert "internal.test" in resolver.calls
    assert "10.0.0.1" not in connections
    assert site.hits == ["/hop/2/internal.test", "/hop/1/internal.test", "/hop/0/internal.test"]


async def test_redirect_to_metadata_is_refused_even_when_private_is_allowed(
    site: Site, connections: list[str]
) -> None:
    result = await collect_images([site.url("/png"), site.url("/to-metadata")], LOCAL)
    assert "cloud metadata address (169.254.169.254)" in result.rejected[0].reason
    assert "169.254.169.254" not in connections


async def test_too_many_redirects_are_refused(site: Site) -> None:
    policy = IntakePolicy(min_images=0, max_redirects=2, resolution=64)
    link = site.public_url("/hop/2/cdn.test", host="cdn.test")
    result = await collect_images([link], policy, resolver=public_resolver("cdn.test"))
    assert result.rejected == (Rejection(link, "too many redirects (more than 2)"),)
    assert len(site.hits) == 3


async def test_connection_goes_to_the_checked_address_not_a_new_lookup(
    site: Site, connections: list[str]
) -> None:
    """DNS rebinding: a second lookup would answer 10.0.0.1, but no second lookup happens."""

    class Rebinding(StubResolver):
        async def resolve(self, host: str, port: int) -> list[str]:
            self.calls.append(host)
            return [PUBLIC] if len(self.calls) == 1 else ["10.0.0.1"]

    resolver = Rebinding()
    result = await collect_images([site.public_url("/png", host="cdn.test")], STRICT, resolver=resolver)
    assert len(result.images) == 1
    assert resolver.calls == ["cdn.test"]
    assert connections == [PUBLIC]


# ---------------------------------------------------------------- sources and counts


async def test_a_single_text_file_of_links_is_expanded(site: Site) -> None:
    policy = IntakePolicy(allow_private=True, min_images=3, resolution=64)
    result = await collect_images([site.url("/list.txt?paths=png,jpeg,webp")], policy)
    assert [image.name for image in result.images] == [site.url(p) for p in ("/png", "/jpeg", "/webp")]


async def test_a_link_list_longer_than_max_images_fails_before_fetching_images(site: Site) -> None:
    policy = IntakePolicy(allow_private=True, max_images=3, resolution=64)
    with pytest.raises(IntakeError, match=r"Too many images: the list names more than 3 links \(the limit is 3\)"):
        await collect_images([site.url("/list.txt?paths=png,png,png,png")], policy)
    assert site.hits == ["/list.txt"]


async def test_more_than_max_sources_fails_before_fetching(site: Site) -> None:
    policy = IntakePolicy(allow_private=True, max_images=3, resolution=64)
    with pytest.raises(IntakeError, match=r"Too many images: 4 \(the limit is 3\)"):
        await collect_images([site.url("/png")] * 4, policy)
    assert site.hits == []


async def test_too_few_usable_images_lists_every_reason(site: Site, tmp_path: Path) -> None:
    policy = IntakePolicy(allow_private=True, min_images=3, resolution=64)
    sources = [PNG, site.url("/page"), TRUNCATED_JPEG, "ftp://example.com/a.png", tmp_path / "gone.png"]
    with pytest.raises(IntakeError) as caught:
        await collect_images(sources, policy)
    assert str(caught.value).splitlines() == [
        "Got 1 usable image; at least 3 are needed.",
        f"- {site.url('/page')}: not an image (text/html page)",
        "- image 3: truncated JPEG",
        "- ftp://example.com/a.png: only http and https links are allowed",
        "- gone.png: file not found",
    ]


async def test_local_paths_raw_bytes_and_image_sources(site: Site, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(JPEG)
    sources = [
        tmp_path / "a.png",
        str(tmp_path / "b.jpg"),
        WEBP,
        ImageSource(data=PNG, name="cat.png"),
        ImageSource(url=site.url("/jpeg")),
    ]
    result = await collect_images(sources, LOCAL)
    names = [image.name for image in result.images]
    assert names == ["a.png", "b.jpg", "image 3", "cat.png", site.url("/jpeg")]


async def test_an_image_source_url_is_never_read_as_a_local_path(tmp_path: Path) -> None:
    """Text from users goes in ImageSource(url=...): a path there must not read the bot's disk."""
    (tmp_path / "secret.png").write_bytes(PNG)
    result = await collect_images([ImageSource(url=str(tmp_path / "secret.png"))], IntakePolicy(min_images=0))
    assert result.images == ()
    assert result.rejected[0].reason == "only http and https links are allowed"


async def test_raw_bytes_over_max_bytes_are_rejected() -> None:
    result = await collect_images([PNG], IntakePolicy(min_images=0, max_bytes=100))
    assert result.rejected == (Rejection("image 1", "larger than 100 bytes"),)


def test_parse_url_list_skips_blank_lines_and_comments() -> None:
    text = "# my dog\n\n  https://a.test/1.png  \nhttps://a.test/2.png https://a.test/3.png\n  # not this\n"
    assert parse_url_list(text) == ["https://a.test/1.png", "https://a.test/2.png", "https://a.test/3.png"]


# ---------------------------------------------------------------- decoding


def test_exif_orientation_is_applied() -> None:
    """Turned clockwise, the red left half ends on top and the blue right half at the bottom."""
    out = Image.open(io.BytesIO(prepare_image(rotated_jpeg(), 64)))
    assert near(out.getpixel((32, 8)), RED)
    assert near(out.getpixel((32, 56)), BLUE)


def test_png_claiming_huge_dimensions_is_rejected_without_decoding() -> None:
    started = time.monotonic()
    with pytest.raises(ValueError, match="too large"):
        prepare_image(png_claiming(100_000, 100_000), 64)
    assert time.monotonic() - started < 0.5


def test_own_pixel_limit_holds_when_pillows_is_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ValueError, match=r"too large \(100000 x 100000 pixels; the limit is 40 megapixels\)"):
        prepare_image(png_claiming(100_000, 100_000), 64)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (HTML, "not an image (HTML page)"),
        (b"GIF89a" + bytes(20), "GIF is not supported"),
        (b"\x00\x00\x00\x18ftypheic" + bytes(20), "HEIC/AVIF is not supported"),
        (b"hello, world", "not a PNG, JPEG or WEBP image"),
        (PNG[:60], "truncated PNG"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "damaged PNG file"),
    ],
)
def test_prepare_image_refuses_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        prepare_image(data, 64)


def test_transparent_areas_become_white() -> None:
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    out = Image.open(io.BytesIO(prepare_image(encode(image, "PNG"), 16)))
    assert out.getpixel((8, 8)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_tones() -> None:
    image = Image.new("I;16", (32, 32), 128 * 256)
    out = Image.open(io.BytesIO(prepare_image(encode(image, "PNG"), 16)))
    assert near(out.getpixel((8, 8)), (128, 128, 128), tolerance=2)


def test_refuses_to_run_when_truncated_images_are_allowed_globally(monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone else's LOAD_TRUNCATED_IMAGES = True would let cut-off files through: fail loudly instead."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        prepare_image(PNG, 64)


def test_preparing_leaves_pillow_settings_alone() -> None:
    prepare_image(PNG, 64)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
