"""The ``box`` field's rules (``app.boxes``): syntax first, then the picture's size."""
from __future__ import annotations

import pytest

from app.boxes import BOX_RULE, MIN_BOX_SIDE, check_box, parse_box
from app.imaging import UploadError


@pytest.mark.parametrize("text, box", [("1,2,30,40", (1, 2, 30, 40)), (" 1 ,2,\t30 , 40\n", (1, 2, 30, 40)),
                                       ("+1,-2,30,40", (1, -2, 30, 40)), ("007,0,10,10", (7, 0, 10, 10))])
def test_parse_box_reads_four_whole_numbers(text, box):
    assert parse_box(text) == box


@pytest.mark.parametrize("text", ["", "1,2,3", "1,2,3,4,", "1;2;3;4", "1.0,2,3,4", "1e3,2,3,4", "١,2,3,4",
                                  "0x10,2,3,4", "1,,2,3", "1234567890,0,1,1", "1," * 60 + "1"])
def test_parse_box_refuses_anything_else_with_the_rule(text):
    with pytest.raises(UploadError) as info:
        parse_box(text)
    assert info.value.status == 400 and info.value.message.endswith(BOX_RULE)


def test_check_box_takes_right_and_bottom_as_exclusive():
    assert check_box((0, 0, 120, 90), 120, 90) == (0, 0, 120, 90)
    assert check_box((10, 10, 10 + MIN_BOX_SIDE, 10 + MIN_BOX_SIDE), 120, 90)
    for box in [(0, 0, 121, 90), (0, 0, 120, 91), (-1, 0, 10, 10), (10, 10, 10 + MIN_BOX_SIDE - 1, 40), (5, 5, 5, 5)]:
        with pytest.raises(UploadError) as info:
            check_box(box, 120, 90)
        assert info.value.status == 400 and BOX_RULE in info.value.message
