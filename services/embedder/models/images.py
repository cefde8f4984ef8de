"""Decoding images safely: byte and pixel limits, formats, EXIF orientation, colour modes.

Everything a client can send is untrusted: corrupt or truncated files, decompression bombs
(a few KB that decode to gigapixels), CMYK or 16-bit images, transparency. Each problem becomes
an INVALID_ARGUMENT that says what to fix. URIs are fetched with size limits and timeouts;
file paths only under the folders the operator allowed.
"""

from __future__ import annotations

import http.client
import io
import unicodedata
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vitrine.common.errors import invalid_argument

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}

# Pillow's own bomb check is a warning below 2x its limit; we check pixels ourselves before
# decoding, so turn its check off rather than have two limits that disagree.
Image.MAX_IMAGE_PIXELS = None


def decode_image(data: bytes, max_bytes: int, max_pixels: int, field: str = "image") -> Image.Image:
    """Bytes -> an upright RGB image, or INVALID_ARGUMENT."""
    if not data:
        raise invalid_argument(f"{field} is empty: send encoded image bytes or a URI")
    if len(data) > max_bytes:
        raise invalid_argument(f"{field} is {len(data)} bytes: at most {max_bytes} are accepted")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise invalid_argument(f"{field} is not a recognised image (JPEG, PNG, WebP, GIF, BMP, TIFF)") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # a known format whose header is cut short or broken
        raise invalid_argument(f"{field} is corrupt or truncated: {exc}") from exc
    if image.format not in ALLOWED_FORMATS:
        raise invalid_argument(f"{field} has unsupported format {image.format}: use JPEG, PNG, WebP, GIF, BMP or TIFF")
    width, height = image.size
    if width * height > max_pixels:
        raise invalid_argument(
            f"{field} is {width}×{height} = {width * height} pixels: at most {max_pixels} are accepted"
        )
    if width < 1 or height < 1:
        raise invalid_argument(f"{field} has no pixels")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise invalid_argument(f"{field} is corrupt or truncated: {exc}") from exc
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparency is composited on white (how a page shows it)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits before converting (via "I": Pillow has no point() for I;16B).
        return image.convert("I").point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")


def to_pixels(image: Image.Image, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """RGB image -> float32 (3, H, W) tensor of (value / 255 - mean) / std, computed with numpy.

    This runs in the decode threads. Torch arithmetic there would start an OpenMP thread team per
    thread, idling in spin-waits on the cores the model thread needs: measured on 2 cores,
    EfficientNet-Lite0 went from 43 to 80 ms a single image once a second thread had used torch.
    """
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    pixels = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def read_uri(uri: str, roots: list[Path], max_bytes: int, timeout_s: float, field: str = "image.uri") -> bytes:
    """Fetch an http(s) URL or read a file under one of `roots`, never more than `max_bytes`."""
    _require_clean_uri(uri, field)
    if uri.startswith(("http://", "https://")):
        return _fetch_http(uri, max_bytes, timeout_s, field)
    try:
        resolved = Path(uri.removeprefix("file://")).expanduser().resolve()
        if not any(resolved.is_relative_to(root.resolve()) for root in roots):
            raise invalid_argument(
                f"{field} {uri!r} is outside the folders this embedder may read "
                "(VITRINE_EMBEDDER_IMAGE_ROOTS); send the bytes instead"
            )
        if not resolved.is_file():
            raise invalid_argument(f"{field} {uri!r} does not exist")
        if resolved.stat().st_size > max_bytes:
            raise invalid_argument(f"{field} {uri!r} is larger than {max_bytes} bytes")
        return resolved.read_bytes()
    except OSError as exc:  # a name too long, a folder without permission: the client's path, not our fault
        raise invalid_argument(f"{field} {uri[:200]!r} cannot be read: {exc.strerror or exc}") from exc
    except RuntimeError as exc:  # "~user/..." of a user this machine does not know
        raise invalid_argument(f"{field} {uri[:200]!r} cannot be read: {exc}") from exc


def _require_clean_uri(uri: str, field: str) -> None:
    # Control characters reach the OS or http.client as ValueError / InvalidURL, which would
    # otherwise surface as INTERNAL; a URL must also have its spaces percent-encoded.
    for position, char in enumerate(uri):
        if unicodedata.category(char) == "Cc":
            raise invalid_argument(
                f"{field} has a control character ({char!r}) at position {position}: "
                "send a URL or file path without control characters"
            )
    if uri.startswith(("http://", "https://")) and " " in uri:
        raise invalid_argument(f"{field} {uri[:200]!r} has a space: percent-encode it as %20")


def _fetch_http(url: str, max_bytes: int, timeout_s: float, field: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "vitrine-embedder"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        raise invalid_argument(f"{field} {url!r} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        # HTTPException: a broken answer or a redirect to an invalid URL; ValueError: urllib's own URL checks.
        raise invalid_argument(f"{field} {url!r} could not be fetched: {exc}") from exc
    if len(data) > max_bytes:
        raise invalid_argument(f"{field} {url!r} is larger than {max_bytes} bytes")
    return data
