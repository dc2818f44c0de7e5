"""Decode, check and normalise one training image. Pillow only; the bytes are untrusted."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFile, ImageOps

FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PIXELS = 40_000_000  # a 40 MP photo is already far more than training at 512 px needs

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


def sniff_format(data: bytes) -> str | None:
    """PNG, JPEG or WEBP judged from the first bytes (never from a Content-Type); None otherwise."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def describe_non_image(data: bytes) -> str:
    """Why bytes that are not PNG, JPEG or WEBP were refused, as a user would want to hear it."""
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if not data:
        return "empty file"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image (HTML page)"
    if head.startswith(b"gif8"):
        return "GIF is not supported (use PNG, JPEG or WEBP)"
    if data[4:8] == b"ftyp":
        return "HEIC/AVIF is not supported (use PNG, JPEG or WEBP)"
    return "not a PNG, JPEG or WEBP image"


def prepare_image(data: bytes, resolution: int) -> bytes:
    """Decode and check `data`, then return it as a `resolution`-pixel square RGB PNG.

    Raises ValueError(reason) for anything that is not a whole, reasonably sized PNG, JPEG or WEBP.
    The EXIF orientation is applied, then the centre square is cut and resized with LANCZOS.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Set globally by some other code: cut-off uploads would be padded with grey and trained on.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; the intake refuses to run")
    image_format = sniff_format(data)
    if image_format is None:
        raise ValueError(describe_non_image(data))
    image = _decode(data, image_format)
    square = ImageOps.fit(_to_rgb(image), (resolution, resolution), method=Image.Resampling.LANCZOS)
    out = io.BytesIO()
    square.save(out, format="PNG")  # no EXIF or other metadata (GPS) goes on into training
    return out.getvalue()


def _decode(data: bytes, image_format: str) -> Image.Image:
    """Open with only the detected format's plugin, refuse huge images before decoding, load fully."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError(_too_many_pixels()) from None
        except Exception:  # noqa: BLE001 - any failure on hostile bytes means "not a usable image"
            raise ValueError(f"damaged {image_format} file") from None
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(_too_many_pixels(width, height))
        try:
            image.load()  # the whole image: a cut-off file fails here (LOAD_TRUNCATED_IMAGES is False)
            return ImageOps.exif_transpose(image)
        except Exception as exc:  # noqa: BLE001 - as above
            raise ValueError(_decode_failure(image_format, exc)) from None


def _too_many_pixels(width: int = 0, height: int = 0) -> str:
    limit = f"the limit is {MAX_PIXELS // 1_000_000} megapixels"
    return f"too large ({width} x {height} pixels; {limit})" if width else f"too large ({limit})"


def _decode_failure(image_format: str, exc: Exception) -> str:
    if "truncated" in str(exc).lower():
        return f"truncated {image_format}"
    return f"damaged {image_format} file"


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for training. Transparent areas become white (convert("RGB") would make them black)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit greyscale: scale to 8 bits, or a plain convert clips nearly everything to white.
        image = image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
