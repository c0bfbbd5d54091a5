"""Decoding and validating uploaded pictures, in memory, before they reach preprocessing.

An upload is bytes from a stranger: Pillow opens it with only the accepted decoders (JPEG, PNG,
WebP), the declared pixel count is checked against ``MAX_PIXELS`` before any pixel is decoded
(a 1 MB JPEG can declare a 50,000 x 50,000 picture), the whole picture is decoded so truncation
shows here, EXIF orientation is applied and every mode becomes RGB. Every refusal is an
``UploadError`` with an HTTP status and a message a person can act on. Nothing touches the disk
and the client's filename is never used.

A phone camera's JPEG (12 to 48 megapixels, 2 to 10 MB) is decoded at a reduced scale
(``model.preprocess.decode_picture``), which costs a fraction of a full decode in time and memory;
boxes stay in the uploaded picture's pixels (``Photo`` maps them to the decoded picture and back).
"""
from __future__ import annotations

import base64
import io
import logging

from PIL import Image, UnidentifiedImageError

from model.preprocess import Photo, decode_picture

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 10 * 1024 * 1024     # 10 MB per picture: a phone camera's JPEG
MAX_PIXELS = 24_000_000                 # 24 megapixels: any phone photo, far below Pillow's 89 M
LIMIT_TEXT = f"the limit is {MAX_UPLOAD_BYTES // 2**20} MB. Send a smaller or more compressed picture"
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
ACCEPTED_DESCRIPTION = "JPEG, PNG or WebP"
# Magic numbers of picture formats people may try, to tell "unsupported" (415) from "not a picture" (400).
OTHER_FORMATS = (
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"), (b"8BPS", "PSD"), (b"%PDF", "PDF"), (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"), (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"<svg", "SVG"),
    (b"<?xml", "SVG"),
)
HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


class UploadError(Exception):
    """An upload that cannot be classified: ``status`` is the HTTP status, the message is for people."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def sniff_other_format(data: bytes) -> str | None:
    """The name of a known, unaccepted picture format that ``data`` starts with, else None."""
    head = data[:32]
    for magic, name in OTHER_FORMATS:
        if head.startswith(magic):
            return name
    if head[4:8] == b"ftyp":
        return HEIF_BRANDS.get(head[8:12], "HEIF/MP4")
    return None


def check_size(data: bytes) -> None:
    """Refuse empty uploads (400) and uploads over MAX_UPLOAD_BYTES (413)."""
    if not data:
        raise UploadError(400, "The file is empty. Choose a photo or picture of a digit.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(413, f"The file is {len(data) / 2**20:.1f} MB; {LIMIT_TEXT}.")


def open_image(data: bytes) -> Image.Image:
    """Open ``data`` with the accepted decoders only; header checks, no pixels decoded yet."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        raise UploadError(413, f"The picture declares too many pixels; the limit is {MAX_PIXELS // 1_000_000} "
                               f"megapixels. Send a smaller picture.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        other = sniff_other_format(data)
        if other:
            raise UploadError(415, f"{other} pictures are not supported. Send a {ACCEPTED_DESCRIPTION} file.") from None
        raise UploadError(400, f"The file is not a picture, or is damaged. Send a {ACCEPTED_DESCRIPTION} file.") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise UploadError(413, f"The picture is {width} x {height} pixels; the limit is "
                               f"{MAX_PIXELS // 1_000_000} megapixels. Send a smaller picture.")
    if width < 1 or height < 1:
        raise UploadError(400, "The picture has no pixels. Send a picture of a digit.")
    return image


def decode_upload(data: bytes) -> Photo:
    """Upload bytes -> the upright RGB picture (a large JPEG at a reduced scale, ``decode_picture``),
    or ``UploadError``.

    Raises:
        UploadError: 400 empty, not a picture, corrupt or truncated; 413 too many bytes or pixels;
            415 a picture format other than JPEG, PNG or WebP.
    """
    check_size(data)
    image = open_image(data)
    try:
        return decode_picture(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        log.info("refused a damaged %s upload: %s", image.format, e)
        raise UploadError(400, f"The {image.format} file is truncated or damaged and cannot be read. "
                               f"Send the picture again, or a different one.") from None


def png_data_url(image: Image.Image) -> str:
    """A small picture as a ``data:image/png;base64,...`` URL for a page or JSON."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)   # 30% less CPU than the default 6, 10% more bytes
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
