"""The intake as a whole: sources in; prepared training images, and a reason for each refused one, out."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from gpu_service.errors import IntakeError
from gpu_service.intake.addresses import Resolver, SystemResolver
from gpu_service.intake.fetch import Download, Fetcher
from gpu_service.intake.images import prepare_image, sniff_format
from gpu_service.intake.models import IntakeImage, IntakePolicy, IntakeResult, Rejection, describe_size
from gpu_service.intake.report import REJECTIONS_BUDGET, format_rejections, redact_url
from gpu_service.intake.url_list import read_url_list
from gpu_service.schemas import ImageSource

SourceLike = ImageSource | str | Path | bytes
T = TypeVar("T")

# Any scheme makes a link, so "ftp://..." is refused as a link rather than looked for on disk.
_LINK = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_DECODE_SLOTS = 2  # a 40 MP decode holds ~120 MB; a few at a time keeps the bot process small
_SNIFF_BYTES = 12  # enough for sniff_format to tell PNG, JPEG and WEBP


@dataclass(frozen=True)
class _Source:
    name: str
    link: str | None = None
    path: Path | None = None
    data: bytes | None = None
    content_type: str = ""  # as the server labelled `data`, for clearer reasons


async def collect_images(
    sources: Sequence[SourceLike], policy: IntakePolicy, *, resolver: Resolver | None = None
) -> IntakeResult:
    """Fetch, check and prepare training images; keep the good ones and a reason for each bad one.

    Sources are links (http/https), local paths (Path, or a str that is not a link), raw bytes, or
    ImageSource. An ImageSource's url is only ever a link, never a path: use it for text from users.
    A single link that answers text/plain is a list of links, read line by line, and is expanded.
    Names of links are kept without user:password@ or query. Raises IntakeError when there are more
    than max_images sources (before fetching any image) or fewer than min_images usable images (listing
    the reasons within REJECTIONS_BUDGET characters).
    """
    if isinstance(sources, (str, bytes, Path, ImageSource)):
        raise TypeError("collect_images takes a sequence of sources, not a single source")
    items = [_as_source(source, index) for index, source in enumerate(sources, start=1)]
    _check_count(len(items), policy)
    async with Fetcher(policy, resolver or SystemResolver()) as fetcher:
        outcomes = await _Intake(policy, fetcher).run(items)
    images = tuple(o for o in outcomes if isinstance(o, IntakeImage))
    rejected = tuple(o for o in outcomes if isinstance(o, Rejection))
    if len(images) < policy.min_images:
        raise IntakeError(_shortfall_message(len(images), rejected, policy))
    return IntakeResult(images, rejected)


def _as_source(source: SourceLike, index: int) -> _Source:
    if isinstance(source, ImageSource):
        name = redact_url(source.name or source.url or f"image {index}")
        if source.data is not None:
            return _Source(name, data=source.data)
        return _Source(name, link=source.url or "")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _Source(f"image {index}", data=bytes(source))
    if isinstance(source, Path):
        return _Source(source.name, path=source)
    if isinstance(source, str):
        text = source.strip()
        if _LINK.match(text):
            return _Source(redact_url(text), link=text)
        return _Source(Path(text).name, path=Path(text))
    raise TypeError(f"unsupported image source: {type(source).__name__}")


def _check_count(count: int, policy: IntakePolicy) -> None:
    if count > policy.max_images:
        raise IntakeError(f"Too many images: {count} (the limit is {policy.max_images}).")


def _shortfall_message(usable: int, rejected: tuple[Rejection, ...], policy: IntakePolicy) -> str:
    plural = "" if usable == 1 else "s"
    headline = f"Got {usable} usable image{plural}; at least {policy.min_images} are needed."
    reasons = format_rejections(rejected, REJECTIONS_BUDGET - len(headline) - 1)
    return f"{headline}\n{reasons}" if reasons else headline


class _Intake:
    """One run: a shared deadline for everything, and a cap on decodes running at once."""

    def __init__(self, policy: IntakePolicy, fetcher: Fetcher) -> None:
        self._policy = policy
        self._fetcher = fetcher
        self._deadline = asyncio.get_running_loop().time() + policy.timeout_s
        self._decode_slots = asyncio.Semaphore(_DECODE_SLOTS)

    async def run(self, sources: list[_Source]) -> list[IntakeImage | Rejection]:
        if len(sources) == 1 and sources[0].link is not None:
            return await self._single_link(sources[0])
        return await self._take_all(sources)

    async def _take_all(self, sources: list[_Source]) -> list[IntakeImage | Rejection]:
        return list(await asyncio.gather(*(self._take(source) for source in sources)))

    async def _take(self, source: _Source) -> IntakeImage | Rejection:
        return await self._guarded(source.name, self._make_image(source))

    async def _single_link(self, source: _Source) -> list[IntakeImage | Rejection]:
        """A lone link may be a text file listing the real links (IMAGES_FILE_URL)."""
        opened = await self._guarded(source.name, self._image_or_list(source.link or ""))
        if isinstance(opened, Rejection):
            return [opened]
        if isinstance(opened, Download):
            fetched = replace(source, link=None, data=opened.data, content_type=opened.content_type)
            return [await self._take(fetched)]
        if not opened:
            return [Rejection(source.name, "the list has no links")]
        return await self._take_all([_Source(redact_url(link), link=link) for link in opened])

    async def _image_or_list(self, link: str) -> Download | list[str]:
        """The image at `link`, or the links it lists when it is text (read line by line, never whole)."""
        async with self._fetcher.open(link) as body:
            head = await body.peek(_SNIFF_BYTES)
            if body.content_type == "text/plain" and sniff_format(head) is None:
                async with aclosing(body.chunks()) as chunks:
                    return await read_url_list(chunks, self._policy.max_images)
            return Download(await body.read(), body.content_type, body.url)

    async def _guarded(self, name: str, work: Awaitable[T]) -> T | Rejection:
        """`work` under the intake's deadline; a refusal or the deadline becomes a Rejection."""
        try:
            async with asyncio.timeout_at(self._deadline):
                return await work
        except TimeoutError:
            limit = f"{self._policy.timeout_s:g} s"
            return Rejection(name, f"timed out (all images must arrive within {limit})")
        except ValueError as exc:
            return Rejection(name, str(exc))

    async def _make_image(self, source: _Source) -> IntakeImage:
        data, content_type = await self._load(source)
        if content_type and not content_type.startswith("image/") and sniff_format(data) is None:
            page = " page" if content_type == "text/html" else ""
            raise ValueError(f"not an image ({content_type}{page})")
        async with self._decode_slots:
            png = await asyncio.to_thread(prepare_image, data, self._policy.resolution)
        return IntakeImage(source.name, png, hashlib.sha256(data).hexdigest())

    async def _load(self, source: _Source) -> tuple[bytes, str]:
        """The original bytes and the server's label for them ("" for files and raw bytes)."""
        if source.data is not None:
            _check_size(len(source.data), self._policy.max_bytes)
            return source.data, source.content_type
        if source.path is not None:
            return await asyncio.to_thread(_read_file, source.path, self._policy.max_bytes), ""
        download = await self._fetcher.fetch(source.link or "")
        return download.data, download.content_type


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"larger than {describe_size(max_bytes)}")


def _read_file(path: Path, max_bytes: int) -> bytes:
    """At most max_bytes + 1 bytes of a regular file (a FIFO or device could block or never end)."""
    if not path.is_file():
        raise ValueError("file not found")
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except OSError as exc:
        raise ValueError(f"could not read the file ({exc.strerror or exc})") from None
    _check_size(len(data), max_bytes)
    return data
