"""Picture files for the serving tests, made in memory: every accepted format and mode, and the
broken, foreign, oversize and malicious files a server meets."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw


PNG_DATA_URL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYGAAAAAEAAH2FzhVAAAAAElFTkSuQmCC"   # 1x1


def digit_picture(size: tuple[int, int] = (120, 90), mode: str = "RGB") -> Image.Image:
    """A dark '7' on a light background, ``size`` = (width, height)."""
    image = Image.new("RGB", size, (235, 232, 225))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.line([(w * 0.3, h * 0.2), (w * 0.7, h * 0.2), (w * 0.45, h * 0.85)], fill=(20, 20, 30), width=max(2, h // 10))
    return image if mode == "RGB" else image.convert(mode)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def jpeg(size=(120, 90), mode="RGB", **params) -> bytes:
    return encode(digit_picture(size, mode), "JPEG", quality=90, **params)


def png(size=(120, 90), mode="RGB") -> bytes:
    return encode(digit_picture(size, mode), "PNG")


def webp(size=(120, 90)) -> bytes:
    return encode(digit_picture(size), "WEBP", quality=90)


def png_16bit() -> bytes:
    a = (np.asarray(digit_picture().convert("L"), np.uint16) * 257)
    return encode(Image.fromarray(a.astype(np.uint16)), "PNG")   # mode I;16


def palette_transparent_png() -> bytes:
    image = digit_picture().convert("P")
    return encode(image, "PNG", transparency=0)


def exif_rotated_jpeg(size=(120, 90), orientation: int = 6) -> bytes:
    """A JPEG stored ``size`` wide whose EXIF says to rotate it (6: 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(size, exif=exif.tobytes())


def mpo(size=(120, 90)) -> bytes:
    """A JPEG with a second frame appended (MPO), as some phone cameras save photos."""
    first = digit_picture(size)
    return encode(first, "MPO", save_all=True, append_images=[first.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])


def truncated_jpeg() -> bytes:
    data = jpeg((400, 300))
    return data[: len(data) // 2]


def noise_png(side: int) -> bytes:
    """Random pixels, which do not compress: about 3 * side**2 bytes."""
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)), "PNG", compress_level=1)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` grey pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 1024, 9)   # far too little data: only the header matters
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", rows) + _chunk(b"IEND", b"")


def gif() -> bytes:
    return encode(digit_picture(), "GIF")


def bmp() -> bytes:
    return encode(digit_picture(), "BMP")


def tiff() -> bytes:
    return encode(digit_picture(), "TIFF")
