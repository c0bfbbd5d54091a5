"""The optional ``box`` a person gives to say where the digit is: parsed and checked at the boundary.

A box is four whole numbers ``left,top,right,bottom`` in pixels of the uploaded picture after its
EXIF rotation (what a person sees), right and bottom exclusive, so ``0,0,W,H`` is the whole
picture. ``parse_box`` checks the syntax (the picture is not decoded yet); ``check_box`` checks it
against the decoded picture's size. A box that reaches past an edge, even by one pixel, is refused
rather than clipped: the page clamps the boxes it draws itself, so only a hand-made request meets
this, and a message naming the picture's size is more use to its author than a silently changed
box. Every refusal is an ``UploadError(400, ...)`` whose message ends with ``BOX_RULE``.
"""
from __future__ import annotations

import re

from app.imaging import UploadError

BOX_FIELD = "box"
MIN_BOX_SIDE = 4          # pixels of the picture; smaller boxes hold no readable digit
MAX_BOX_TEXT = 100        # characters; longer field values are refused without parsing
BOX_RULE = (f"A box must be four whole numbers left,top,right,bottom in pixels of the picture, with "
            f"left < right and top < bottom, at least {MIN_BOX_SIDE} x {MIN_BOX_SIDE} pixels, inside the picture.")
_NUMBER = r"\s*([+-]?[0-9]{1,9})\s*"
_BOX_PATTERN = re.compile(",".join([_NUMBER] * 4))

Box = tuple[int, int, int, int]


def _refuse(problem: str) -> UploadError:
    return UploadError(400, f"{problem} {BOX_RULE}")


def parse_box(text: str) -> Box:
    """``"left,top,right,bottom"`` (whitespace tolerated) -> four ints; the values are not checked.

    Raises:
        UploadError: 400 if ``text`` is not four comma-separated whole numbers.
    """
    match = _BOX_PATTERN.fullmatch(text) if len(text) <= MAX_BOX_TEXT else None
    if not match:
        shown = text if len(text) <= 40 else text[:40] + "…"
        raise _refuse(f"The box {shown!r} is not four whole numbers separated by commas.")
    left, top, right, bottom = (int(v) for v in match.groups())
    return left, top, right, bottom


def check_box(box: Box, width: int, height: int) -> Box:
    """``box`` if it is a usable box in a ``width`` x ``height`` picture.

    Raises:
        UploadError: 400 if it is inverted or empty, smaller than MIN_BOX_SIDE on a side, or not
            wholly inside the picture.
    """
    left, top, right, bottom = box
    named = f"The box {left},{top},{right},{bottom}"
    if right <= left or bottom <= top:
        raise _refuse(f"{named} is inverted or empty (right must be more than left, bottom more than top).")
    if right - left < MIN_BOX_SIDE or bottom - top < MIN_BOX_SIDE:
        raise _refuse(f"{named} is only {right - left} x {bottom - top} pixels.")
    if left < 0 or top < 0 or right > width or bottom > height:
        raise _refuse(f"{named} reaches outside the {width} x {height} picture (0,0,{width},{height} is all of it).")
    return box
