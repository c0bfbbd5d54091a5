"""bench/photo_suite.py: its paired variants, and comparing two runs of the suite picture by picture."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bench.photo_suite import SEED_OF, VARIANTS, earlier_run, paired, photo_rng


def test_the_badly_lit_photo_is_the_plain_wall_frame_dimmed_picture_for_picture():
    crop = np.zeros((32, 32, 3), np.uint8)
    crop[8:24, 8:24] = 255                           # a white square on black: where it lands shows
    others = np.stack([crop] * 3)
    name, plain = "plain wall frame, badly lit", "in a 3-6x frame: plain wall"
    assert SEED_OF[name] == list(VARIANTS).index(plain)
    for i in range(5):
        lit = VARIANTS[plain](crop, np.random.default_rng([2026, i, 2]), others, ()).astype(np.float64)
        dim = VARIANTS[name](crop, np.random.default_rng([2026, i, 2]), others, ()).astype(np.float64)
        assert dim.shape == lit.shape
        assert dim.mean() < 0.7 * lit.mean(), "underexposed"
        assert dim[..., 2].sum() / lit[..., 2].sum() < dim[..., 0].sum() / lit[..., 0].sum(), "a warm cast"
        black = lit.mean(axis=2) < 10                # the crop's black border, in the same place
        assert black.any() and dim[black].mean() < 0.5 * dim[~black].mean()


def test_paired_counts_pictures_gained_and_lost_with_mcnemars_standard_error():
    before = {"plain wall": [True, True, False, False, True], "box IoU >= 0.5": [False, True]}
    now = {"plain wall": [True, False, True, True, True], "box IoU >= 0.5": [True, True]}
    rows = {name: rest for name, *rest in paired(now, before)}
    assert rows["plain wall"] == [2, 1, math.sqrt(3)]     # pictures 3 and 4 gained, 2 lost, 1 and 5 the same
    assert rows["box IoU >= 0.5"] == [1, 0, 1.0]


def test_paired_skips_what_the_earlier_run_lacks_or_counted_differently():
    before = {"street scene": [True, False]}
    now = {"street scene": [True], "rotated": [False, True]}
    assert paired(now, before) == []


def test_an_earlier_run_is_read_back_and_a_foreign_file_refused_with_a_message(tmp_path):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"localiser": "x.pt", "outcomes": {"plain wall": [True, False]}}))
    assert earlier_run(str(saved)) == {"plain wall": [True, False]}
    (tmp_path / "other.json").write_text("[1, 2]")
    for bad in ("other.json", "missing.json"):
        with pytest.raises(SystemExit, match="not a file written by --save"):
            earlier_run(str(tmp_path / bad))


def test_draw_0_is_the_suites_own_pictures_and_another_draw_other_ones_still_paired():
    for i in range(3):
        for index, name in enumerate(VARIANTS):
            own = photo_rng(0, i, name).random(4)
            assert np.array_equal(own, np.random.default_rng([2026, i, SEED_OF.get(name, index)]).random(4))
            assert not np.array_equal(own, photo_rng(3, i, name).random(4))
        lit, dim = (photo_rng(3, i, n).random(4) for n in ("in a 3-6x frame: plain wall", "plain wall frame, badly lit"))
        assert np.array_equal(lit, dim)


def test_an_earlier_run_of_another_draw_is_refused(tmp_path):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"draw": 3, "outcomes": {"plain wall": [True]}}))
    assert earlier_run(str(saved), draw=3) == {"plain wall": [True]}
    with pytest.raises(SystemExit, match="--draw 3, this run's --draw 0"):
        earlier_run(str(saved))
