"""Image decoding (`decode_image`, `to_rgb`, `read_uri`): limits, formats, orientation, colour modes.

Every way a client's bytes can be wrong must end as INVALID_ARGUMENT with a message that says
what is wrong; every odd-but-valid image must come out as an upright RGB picture."""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import FIXTURES
from vitrine.common.errors import ServiceError
from vitrine.embedder.models.images import decode_image, read_uri, to_pixels, to_rgb

MB = 1024 * 1024
MAX_PIXELS = 40_000_000
PAINTINGS = sorted((FIXTURES / "paintings").glob("*.jpg"))  # real ones, copied from ../shared/data


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, max_bytes: int = 20 * MB, max_pixels: int = MAX_PIXELS) -> Image.Image:
    return decode_image(data, max_bytes, max_pixels, "images[3]")


def refused(data: bytes, **limits: int) -> str:
    """Decoding `data` must fail with INVALID_ARGUMENT naming the field; returns the message."""
    with pytest.raises(ServiceError) as caught:
        decode(data, **limits)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "images[3]" in caught.value.message
    return caught.value.message


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit all-black PNG of width×height, built row by row (tens of KB for 20000×20000)."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def painting() -> Image.Image:
    return Image.open(PAINTINGS[0]).convert("RGB")


# --- valid images --------------------------------------------------------------------------------


def test_real_painting_decodes_to_rgb() -> None:
    data = PAINTINGS[0].read_bytes()
    image = decode(data)
    assert image.mode == "RGB"
    assert image.size == Image.open(io.BytesIO(data)).size


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_allowed_format_decodes(painting: Image.Image, fmt: str) -> None:
    image = decode(encode(painting, fmt))
    assert image.mode == "RGB"
    assert image.size == painting.size


def test_exif_orientation_is_applied() -> None:
    # A 60 wide × 20 high picture whose EXIF says "rotate 90° clockwise to display" (orientation 6):
    # the decoded image must be upright, i.e. 20 wide × 60 high, with the left part on top.
    stored = Image.new("RGB", (60, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))  # red on the stored image's left
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode(encode(stored, "JPEG", exif=exif, quality=95))
    assert image.size == (20, 60)
    red, _, blue = image.getpixel((10, 10))
    assert red > 200 and blue < 60, "the stored left edge must end up on top"


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("RGB", (32, 32), (200, 30, 30)).convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    image = decode(data)
    assert image.mode == "RGB"
    assert np.allclose(image.getpixel((16, 16)), (200, 30, 30), atol=12)


def test_greyscale_becomes_rgb() -> None:
    image = decode(encode(Image.new("L", (16, 16), 90), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((8, 8)) == (90, 90, 90)


def _grey_ramp_16bit() -> np.ndarray:
    return (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520


def test_16bit_greyscale_png_is_scaled_to_8_bits() -> None:
    ramp = _grey_ramp_16bit()
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    pixels = np.asarray(decode(data))
    assert pixels.shape == (64, 64, 3)
    # scaled, not clipped: the ramp must still be a ramp from black to white
    assert np.abs(pixels[..., 0].astype(int) - (ramp >> 8)).max() <= 1
    assert pixels.min() == 0 and pixels.max() == 255


@pytest.mark.parametrize(("mode", "dtype"), [("I;16", "<u2"), ("I;16B", ">u2")])
def test_16bit_greyscale_tiff_both_byte_orders(mode: str, dtype: str) -> None:
    # TIFFs from scanners are often big-endian ("MM"): Pillow opens them as I;16B.
    ramp = _grey_ramp_16bit()
    data = encode(Image.frombytes(mode, (64, 64), ramp.astype(dtype).tobytes()), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == mode
    pixels = np.asarray(decode(data))
    assert np.abs(pixels[..., 0].astype(int) - (ramp >> 8)).max() <= 1


def test_rgba_is_composited_on_white() -> None:
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent left half
    rgba.paste((255, 0, 0, 255), (10, 0, 20, 10))  # opaque red right half
    half = Image.new("RGBA", (1, 1), (255, 0, 0, 128))
    image = decode(encode(rgba, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((15, 5)) == (255, 0, 0)
    blended = to_rgb(half).getpixel((0, 0))
    assert blended[0] == 255 and 120 <= blended[1] <= 135  # half-transparent red on white is pink


def test_palette_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0, 0, 128, 0] + [0] * (254 * 3))  # index 0 black, index 1 green
    palette.paste(1, (5, 0, 10, 10))
    data = encode(palette, "PNG", transparency=0)  # index 0 is transparent
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == "P" and "transparency" in opened.info
    image = decode(data)
    assert image.getpixel((1, 1)) == (255, 255, 255), "transparent black must show as white, not black"
    assert image.getpixel((8, 8)) == (0, 128, 0)


def test_greyscale_with_alpha_is_composited_on_white() -> None:
    la = Image.new("LA", (4, 4), (0, 0))
    assert decode(encode(la, "PNG")).getpixel((1, 1)) == (255, 255, 255)


def test_to_rgb_leaves_rgb_alone(painting: Image.Image) -> None:
    assert to_rgb(painting) is painting


# --- refused images ------------------------------------------------------------------------------


def test_empty_bytes_are_refused() -> None:
    assert "empty" in refused(b"")


def test_max_bytes_is_enforced() -> None:
    data = PAINTINGS[0].read_bytes()
    message = refused(data, max_bytes=len(data) - 1)
    assert str(len(data)) in message and str(len(data) - 1) in message
    assert decode(data, max_bytes=len(data)).mode == "RGB"  # the limit itself is allowed


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 100_000  # a few tens of KB that would decode to 400 million pixels
    message = refused(bomb)
    assert "pixels" in message and "400000000" in message and str(MAX_PIXELS) in message


def test_pixel_limit_is_inclusive() -> None:
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert decode(data, max_pixels=5000).size == (100, 50)
    assert "pixels" in refused(data, max_pixels=4999)


def test_garbage_is_refused() -> None:
    assert "not a recognised image" in refused(b"this is not an image, just some text\n" * 10)


def test_pdf_is_refused() -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    assert "not a recognised image" in refused(pdf)


def test_format_pillow_reads_but_we_do_not_is_refused(painting: Image.Image) -> None:
    message = refused(encode(painting.resize((32, 32)), "ICO"))
    assert "unsupported format ICO" in message


def test_truncated_jpeg_is_refused() -> None:
    data = PAINTINGS[0].read_bytes()
    assert "corrupt or truncated" in refused(data[: len(data) // 2])


@pytest.mark.parametrize("keep", [3, 14, 40, 120])
def test_jpeg_cut_inside_its_header_is_refused(keep: int) -> None:
    # Cut before the image data starts: Pillow fails while reading the header, not in load().
    assert "images[3]" in refused(PAINTINGS[0].read_bytes()[:keep])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about each damaged TIFF tag
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_damaged_files_never_escape_as_other_errors(painting: Image.Image, fmt: str) -> None:
    """Truncations and byte flips of every allowed format either decode or give INVALID_ARGUMENT
    (anything else would reach the client as INTERNAL)."""
    original = encode(painting.resize((64, 64)), fmt)
    rng = random.Random(fmt)
    for _ in range(60):
        damaged = bytearray(original)
        if rng.random() < 0.4:
            damaged = damaged[: rng.randrange(len(damaged))]
        else:
            for _ in range(rng.randrange(1, 6)):
                damaged[rng.randrange(min(len(damaged), 400))] = rng.randrange(256)
        try:
            assert decode(bytes(damaged)).mode == "RGB"
        except ServiceError as exc:
            assert exc.code == grpc.StatusCode.INVALID_ARGUMENT


# --- URIs ----------------------------------------------------------------------------------------


def test_file_uri_under_an_allowed_root_is_read(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"bytes")
    assert read_uri(str(tmp_path / "a.jpg"), [tmp_path], MB, 1.0) == b"bytes"
    assert read_uri(f"file://{tmp_path / 'a.jpg'}", [tmp_path], MB, 1.0) == b"bytes"


@pytest.mark.parametrize("uri", ["/etc/hostname", "{root}/../outside.jpg", "relative.jpg"])
def test_file_uri_outside_the_roots_is_refused(tmp_path: Path, uri: str) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    with pytest.raises(ServiceError) as caught:
        read_uri(uri.format(root=root), [root], MB, 1.0)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "outside the folders" in caught.value.message


def test_symlink_out_of_a_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    with pytest.raises(ServiceError, match="outside the folders"):
        read_uri(str(root / "link.jpg"), [root], MB, 1.0)


def test_no_roots_means_no_file_uris(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"bytes")
    with pytest.raises(ServiceError, match="outside the folders"):
        read_uri(str(tmp_path / "a.jpg"), [], MB, 1.0)


def test_missing_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="does not exist"):
        read_uri(str(tmp_path / "nope.jpg"), [tmp_path], MB, 1.0)
    (tmp_path / "big.jpg").write_bytes(bytes(101))
    with pytest.raises(ServiceError, match="larger than 100 bytes"):
        read_uri(str(tmp_path / "big.jpg"), [tmp_path], 100, 1.0)


# --- Pixels for the models, prepared without torch arithmetic -----------------------------------


def test_clip_preparation_equals_open_clips_own() -> None:
    """The embedder runs open_clip's resizing steps and does ToTensor / Normalize in numpy (so
    the decode threads start no OpenMP team of their own): the pixels must be open_clip's."""
    import open_clip

    from vitrine.embedder.models.base import Placement
    from vitrine.embedder.models.clip import ClipModel

    config = FIXTURES / "tiny_clip.json"
    model = ClipModel("tiny_clip", "", Placement("cpu", torch.float32), str(config))
    model.load()
    _, _, preprocess = open_clip.create_model_and_transforms("tiny_clip", pretrained=None)
    for path in PAINTINGS[:3]:
        image = decode(path.read_bytes())
        expected = preprocess(image)
        prepared = model.prepare_image(image)
        assert prepared.dtype == torch.float32 and prepared.shape == expected.shape
        assert torch.allclose(prepared, expected, atol=1e-6)


def test_to_pixels_is_to_tensor_then_normalize() -> None:
    from torchvision import transforms

    image = decode(PAINTINGS[0].read_bytes())
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = transforms.Normalize(mean, std)(transforms.ToTensor()(image))
    assert torch.allclose(to_pixels(image, mean, std), expected, atol=1e-6)
