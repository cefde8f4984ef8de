"""Fetching images by URL at ingest time: http(s) and IIIF Image API, bounded and retried.

A museum's records often point at images on its own servers (a IIIF image service, a CDN).
Ingest fetches them itself, so the image bytes are part of the object's content hash (a changed
image is re-embedded, an unchanged one is not) and the embedder needs no network access.
Every fetch is bounded: a timeout per attempt, a byte limit, at most `retries` further tries
with back-off for transient failures (timeouts, connection errors, 429 and 5xx); a 4xx other
than 429 is final.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

# IIIF Image API: an image service's base URL (or its info.json) is turned into a request for the
# whole image scaled to fit in a box; models need no more than this many pixels a side.
IIIF_SIZE = 1024
_IIIF_INFO = re.compile(r"/info\.json$")
_TRANSIENT_HTTP = {429, 500, 502, 503, 504}


class FetchError(Exception):
    """The URL could not give an image (the message says why and whether retries were spent)."""


@dataclass(frozen=True)
class FetchSettings:
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    max_bytes: int = 20 * 1024 * 1024


def iiif_image_url(url: str) -> str:
    """`.../info.json` of a IIIF image service -> a request for the full image, at most
    IIIF_SIZE pixels a side (`!w,h` is valid in IIIF Image API 2 and 3); other URLs unchanged."""
    if _IIIF_INFO.search(url):
        return _IIIF_INFO.sub(f"/full/!{IIIF_SIZE},{IIIF_SIZE}/0/default.jpg", url)
    return url


def fetch_image_bytes(url: str, settings: FetchSettings = FetchSettings()) -> bytes:
    try:
        return fetch_bytes(iiif_image_url(url), settings, accept="image/*")
    except FetchError as exc:
        raise FetchError(f"{url}: {exc}") from exc


def fetch_bytes(url: str, settings: FetchSettings = FetchSettings(), accept: str = "*/*") -> bytes:
    """The body at `url`, bounded and retried as the module says; FetchError says why not (without
    the URL: callers name what they were fetching)."""
    request = urllib.request.Request(url, headers={"User-Agent": "vitrine-ingest", "Accept": accept})
    last = ""
    for attempt in range(settings.retries + 1):
        if attempt:
            time.sleep(settings.backoff_s * 2 ** (attempt - 1))
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > settings.max_bytes:
                    raise FetchError(f"{int(declared)} bytes, more than the {settings.max_bytes} allowed")
                data = response.read(settings.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in _TRANSIENT_HTTP:
                raise FetchError(last) from exc
            continue
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
            continue
        if len(data) > settings.max_bytes:
            raise FetchError(f"more than the {settings.max_bytes} bytes allowed")
        return data
    raise FetchError(f"{last} (after {settings.retries + 1} attempts)")
