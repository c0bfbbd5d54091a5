"""Tests for train/synth.py: determinism, split separation, labels by construction, font filter."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train import synth

N_SMALL = 24
INK_LEVEL = 224  # a pixel darker than this on a white plate counts as ink
CENTRE_TOLERANCE_PX = 2.0


@pytest.fixture(scope="module")
def fonts() -> list[Path]:
    return synth.find_fonts()


def _ink_columns(img: np.ndarray) -> np.ndarray:
    return np.flatnonzero((img.min(axis=-1) < INK_LEVEL).any(axis=0))


def test_generate_shapes_dtypes_and_labels():
    x, y = synth.generate(N_SMALL, seed=0)
    assert x.shape == (N_SMALL, 32, 32, 3) and x.dtype == np.uint8
    assert y.shape == (N_SMALL,) and y.dtype == np.int64
    assert y.min() >= 0 and y.max() <= 9
    assert x.std() > 10, "images should not be flat"


def test_generate_other_size():
    x, _ = synth.generate(4, seed=0, size=24)
    assert x.shape == (4, 24, 24, 3)


def test_same_seed_identical_and_different_seed_differs():
    x1, y1 = synth.generate(N_SMALL, seed=3)
    x2, y2 = synth.generate(N_SMALL, seed=3)
    x3, _ = synth.generate(N_SMALL, seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_workers_do_not_change_the_data():
    x1, y1 = synth.generate(N_SMALL, seed=5, workers=1)
    x2, y2 = synth.generate(N_SMALL, seed=5, workers=2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_splits_share_no_sample():
    samples = {split: synth.generate(N_SMALL, seed=0, split=split)[0] for split in synth.SPLIT_IDS}
    flat = {split: {img.tobytes() for img in x} for split, x in samples.items()}
    assert not flat["train"] & flat["val"]
    assert not flat["train"] & flat["test"]
    assert not flat["val"] & flat["test"]


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split"):
        synth.generate(1, seed=0, split="holdout")


@pytest.mark.parametrize("label", range(10))
def test_lone_digit_is_centred_and_visible(fonts, label):
    rng = np.random.default_rng(label)
    for font in fonts[label::25]:  # a different slice of faces per digit keeps this quick
        img = synth.render_style(synth.plain_style(font), label, rng, size=32)
        cols = _ink_columns(img)
        assert cols.size > 0, f"digit {label} blank in {font}"
        centre = (cols[0] + cols[-1] + 1) / 2
        assert abs(centre - 16) <= CENTRE_TOLERANCE_PX, f"digit {label} off-centre in {font}"


def test_every_found_font_draws_ten_distinct_digits(fonts):
    for font in fonts:
        face = synth.get_font(str(font), 16)  # a size the filter itself never probes with
        glyphs = [synth._glyph_bitmap(face, d) for d in synth.DIGITS]
        assert all(g.max() > 0 for g in glyphs), f"blank digit in {font}"
        assert len({g.tobytes() for g in glyphs}) == 10, f"repeated digit glyph in {font}"


def test_face_without_digits_is_dropped(tmp_path):
    dingbats = sorted(Path("/usr/share/fonts").rglob("D050000L.t1"))
    if dingbats:
        assert not synth.font_draws_digits(dingbats[0])
        (tmp_path / dingbats[0].name).symlink_to(dingbats[0])
        with pytest.raises(RuntimeError, match="fonts-"):
            synth.find_fonts([tmp_path])
    not_a_font = tmp_path / "broken.ttf"
    not_a_font.write_bytes(b"not a font")
    assert not synth.font_draws_digits(not_a_font)


def test_find_fonts_raises_naming_packages_when_empty(tmp_path):
    with pytest.raises(RuntimeError, match="fonts-dejavu"):
        synth.find_fonts([tmp_path])


def test_load_or_generate_caches(tmp_path):
    x1, y1 = synth.load_or_generate(tmp_path, 6, seed=1, split="val", workers=1)
    files = list((tmp_path / "synthdigits").glob("*.npz"))
    assert [f.name for f in files] == [f"val-6-1-v{synth.GENERATOR_VERSION}.npz"]
    x2, y2 = synth.load_or_generate(tmp_path, 6, seed=1, split="val", workers=1)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)


def test_symbol_faces_are_not_used(fonts):
    # Dingbats and weather icons sit at the digit codepoints of these faces: not digits.
    symbol_stems = ("D050000L", "DSEGWeather", "LinBiolinum_K")
    assert not [f for f in fonts if f.stem.startswith(symbol_stems)]


def test_ablations_switch_parts_off_and_keep_the_rest_of_the_draw():
    full, y_full = synth.generate(6, 11, "train")
    plain, y_plain = synth.generate(6, 11, "train", ablate=frozenset({"colour"}))
    assert (y_full == y_plain).all()  # same labels: ablation happens after sampling
    assert not (full == plain).all()
    # black digits on white: the brightest pixels of a colour-ablated crop are near white
    assert (plain.reshape(6, -1).max(1) > 200).all()


def test_unknown_ablation_is_a_clear_error():
    with pytest.raises(ValueError, match="Invalid ablation"):
        synth.generate(2, 0, "train", ablate=frozenset({"everything"}))


def test_clutter_is_drawn_in_its_colour_and_the_colour_ablation_removes_it(fonts):
    """A red line across the top of a plain white crop: the top rows turn red, the digit stays."""
    plain = synth.plain_style(fonts[0])
    line = synth.replace(plain, clutter=((1.0, -0.2, 0.06, 1.2, 0.06, 3.0),), clutter_colour=(1.0, 0.0, 0.0))
    before = synth.render_style(plain, 4, np.random.default_rng(0)).astype(int)
    after = synth.render_style(line, 4, np.random.default_rng(0)).astype(int)
    top = after[1:3]
    assert (top[..., 0] > 240).all() and (top[..., 1:] < 80).all()  # 80% red over white
    assert (before[1:3] > 240).all()
    assert np.array_equal(before[12:], after[12:])  # the digit's rows are untouched
    ablated = synth.ablate_style(line, frozenset({"colour"}), fonts)
    assert np.array_equal(synth.render_style(ablated, 4, np.random.default_rng(0)), before)


def test_sampled_styles_have_zero_to_three_clutter_items():
    rng = np.random.default_rng(5)
    counts = [len(synth._sample_effects(rng)["clutter"]) for _ in range(400)]
    assert set(counts) == {0, 1, 2, 3}


def _faces_of_several_folders(fonts: list[Path], n: int = 6) -> list[Path]:
    """Up to ``n`` faces, the first of each folder (folders weigh the faces), in find_fonts order."""
    chosen, folders = [], set()
    for face in fonts:
        if face.parent not in folders:
            chosen.append(face)
            folders.add(face.parent)
        if len(chosen) == n:
            break
    return chosen


def test_a_font_kit_is_found_in_the_same_order_and_draws_the_same_pixels(fonts, tmp_path, monkeypatch):
    """train.fontkit: the faces cut down to the characters drawn are a fraction of the size, and a
    machine that only has the kit (SYNTH_FONT_DIRS) renders the same digits and scenes."""
    from train import fontkit

    faces = _faces_of_several_folders(fonts)
    assert len(faces) >= 3
    kit = fontkit.write_kit(tmp_path / "kit", faces)
    assert [k.relative_to(tmp_path / "kit") for k in kit] == [f.absolute().relative_to("/") for f in faces]
    assert sum(k.stat().st_size for k in kit) < sum(f.stat().st_size for f in faces) / 3
    monkeypatch.setenv(synth.FONT_DIRS_ENV, str(tmp_path / "kit"))
    assert synth.find_fonts() == kit
    assert fontkit.same_drawing(faces, kit, digits=60, scenes=6)
    assert not fontkit.same_drawing(faces, kit[::-1], digits=60, scenes=6)   # the check can tell faces apart
