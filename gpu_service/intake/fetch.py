"""Download one link safely: checked addresses only, redirects by hand, a byte cap while streaming."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from gpu_service.intake.addresses import Resolver, check_url
from gpu_service.intake.models import IntakePolicy, describe_size

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HEADERS = {
    "User-Agent": "stable-qwerty-intake/1.0",
    "Accept": "image/png, image/jpeg, image/webp, text/plain;q=0.5",
    # Plain bytes only: the byte cap then measures what is really held in memory (no gzip bombs).
    "Accept-Encoding": "identity",
}


@dataclass(frozen=True)
class Download:
    data: bytes
    content_type: str  # media type without parameters, lower case; "" when the server sent none
    url: str  # where the bytes came from, after redirects


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for one intake: answers only with addresses that check_url approved.

    The connection thus goes to the very address that was checked; there is no second DNS lookup
    a hostile DNS server could answer differently (DNS rebinding). An unpinned host fails to connect.
    """

    def __init__(self) -> None:
        self._pins: dict[str, tuple[str, ...]] = {}

    def pin(self, host: str, addresses: tuple[str, ...]) -> None:
        self._pins[_host_key(host)] = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._pins.get(_host_key(host))
        if not addresses:
            raise OSError(f"{host} was not checked before connecting")
        return [_resolve_result(host, address, port) for address in addresses]

    async def close(self) -> None:
        self._pins.clear()


def _host_key(host: str) -> str:
    return host.lower().rstrip(".")


def _resolve_result(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(
        hostname=host, host=address, port=port, family=family, proto=0, flags=socket.AI_NUMERICHOST
    )


class Fetcher:
    """One HTTP session for one intake. Use as `async with Fetcher(policy, resolver) as fetcher`."""

    def __init__(self, policy: IntakePolicy, resolver: Resolver) -> None:
        self._policy = policy
        self._resolver = resolver
        self._pins = PinnedResolver()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        connector = aiohttp.TCPConnector(resolver=self._pins, use_dns_cache=False, limit=8)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=_HEADERS,
            trust_env=False,  # no proxy from the environment: the checked address is the one reached
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=self._policy.timeout_s),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, link: str) -> Download:
        """The body at `link`, following at most max_redirects redirects. Raises ValueError(reason)."""
        async with self.open(link) as body:
            return Download(await body.read(), body.content_type, body.url)

    @asynccontextmanager
    async def open(self, link: str) -> AsyncIterator[Body]:
        """The response at `link` after redirects, its body not yet read. Raises ValueError(reason).

        Every hop's address is checked before connecting; leaving the block drops an unread body.
        """
        url = _parse(link)
        for _ in range(self._policy.max_redirects + 1):
            async with self._response(url) as response:
                if response.status not in _REDIRECTS:
                    body = Body(response, self._policy.max_bytes)
                    try:
                        yield body
                    finally:
                        await body.close()
                    return
                url = _redirect_target(url, response)
        raise ValueError(f"too many redirects (more than {self._policy.max_redirects})")

    @asynccontextmanager
    async def _response(self, url: URL) -> AsyncIterator[aiohttp.ClientResponse]:
        """One hop: check the address, then GET. A 200 or a redirect comes out; other answers are refused."""
        addresses = await check_url(url, self._resolver, allow_private=self._policy.allow_private)
        self._pins.pin(url.raw_host or "", addresses)
        assert self._session is not None, "use Fetcher in `async with`"
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200 and response.status not in _REDIRECTS:
                    raise ValueError(f"the server answered HTTP {response.status}")
                yield response
        except TimeoutError:
            raise  # the intake's own time limit reports it
        except aiohttp.ClientConnectorError:
            raise ValueError(f"could not connect to {url.host}") from None
        except aiohttp.ClientError as exc:
            raise ValueError(f"download failed ({type(exc).__name__})") from None


class Body:
    """A response body read as it arrives, refused as soon as it passes the byte limit."""

    def __init__(self, response: aiohttp.ClientResponse, limit: int) -> None:
        self.content_type = response.content_type.lower() if "Content-Type" in response.headers else ""
        self.url = str(response.url)
        self._stream = _capped(response, limit)
        self._head = b""  # bytes peeked at but not yet handed out

    async def peek(self, size: int) -> bytes:
        """At least `size` bytes from the start (fewer only when the body is shorter), kept for chunks()."""
        while len(self._head) < size:
            chunk = await anext(self._stream, None)
            if chunk is None:
                break
            self._head += chunk
        return self._head

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body piece by piece."""
        if self._head:
            head, self._head = self._head, b""
            yield head
        async for chunk in self._stream:
            yield chunk

    async def read(self) -> bytes:
        body = bytearray()
        async for chunk in self.chunks():
            body += chunk
        return bytes(body)

    async def close(self) -> None:
        await self._stream.aclose()


async def _capped(response: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
    """Stream the body and stop as soon as it passes `limit`; Content-Length is only a hint."""
    too_big = f"larger than {describe_size(limit)}"
    if response.content_length is not None and response.content_length > limit:
        raise ValueError(too_big)
    received = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        received += len(chunk)
        if received > limit:
            raise ValueError(too_big)
        yield chunk


def _parse(link: str) -> URL:
    try:
        return URL(link)
    except ValueError:
        raise ValueError("not a valid link") from None


def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
    location = response.headers.get("Location")
    if not location:
        raise ValueError(f"the server answered HTTP {response.status} without a Location")
    try:
        return url.join(URL(location))
    except ValueError:
        raise ValueError("redirect to an invalid link") from None
