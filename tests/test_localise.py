"""train.localise: CenterNet targets, the loss, and a tiny run that writes and resumes its checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.checkpoint import load_checkpoint, make_checkpoint, save_checkpoint
from model.localiser import HEAT, MEAN, STD, LOG_H, LOG_W, OFFSET_X, OFFSET_Y, OUTPUTS
from model.networks import ArchConfig, build_network
from train import localise


def test_targets_put_a_peak_and_the_size_at_each_centre():
    boxes = [np.array([[8, 16, 24, 48]], np.float32), np.zeros((0, 4), np.float32)]
    ignore = [np.zeros((0, 4), np.float32), np.array([[0, 0, 16, 16]], np.float32)]
    t = localise.targets(boxes, ignore, grid=32, cut_digits="ignore")
    assert t["heat"].shape == (2, 32, 32) and t["heat"][0].max() == 1.0 and t["heat"][1].max() == 0
    (i, row, col), = t["cells"]
    assert (i, row, col) == (0, 8, 4)                      # centre (16, 32) px = cell (x 4, y 8)
    # offsets are measured from the cell's middle, in [-0.5, 0.5)
    np.testing.assert_allclose(t["regress"][0], [-0.5, -0.5, np.log(4), np.log(8)], atol=1e-6)
    assert t["neg_weight"][1, :4, :4].max() == 0 and t["neg_weight"][1, 10, 10] == 1   # ignored cells


def test_cut_digits_are_negatives_by_default_and_other_modes_are_refused():
    boxes = [np.zeros((0, 4), np.float32)]
    ignore = [np.array([[0, 0, 16, 16]], np.float32)]
    t = localise.targets(boxes, ignore, grid=32)
    assert t["neg_weight"].min() == 1 and t["heat"].max() == 0          # a cut digit is background
    with pytest.raises(ValueError, match="cut_digits"):
        localise.targets(boxes, ignore, grid=32, cut_digits="positive")


def test_augmented_scenes_keep_their_boxes_on_their_digits(monkeypatch):
    monkeypatch.setattr(localise, "ZOOM_P", 1.0)
    monkeypatch.setattr(localise, "INVERT_P", 0.0)
    monkeypatch.setattr(localise, "CONTRAST_P", 0.0)
    image = np.full((128, 128, 3), 100, np.uint8)
    image[40:80, 40:60] = 250                                   # the "digit"
    box = np.array([[40, 40, 60, 80]], np.float32)
    zoomed_in = zoomed_out = 0
    for seed in range(30):
        out, boxes, ignore = localise.augment(image, box, np.zeros((0, 4), np.float32), np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8 and len(boxes) + len(ignore) <= 1
        if len(boxes):
            x0, y0, x1, y1 = np.round(boxes[0]).astype(int)
            zoomed_in += x1 - x0 > 21
            zoomed_out += x1 - x0 < 19
            assert out[y0 + 2:y1 - 2, x0 + 2:x1 - 2].min() > 200, "the box must still hold the digit"
            above, below = out[y0 - 3:y0 - 1, x0:x1] if y0 >= 3 else out[:0], out[y1 + 1:y1 + 3, x0:x1]
            assert max(above.max(initial=0), below.max(initial=0)) < 200, "and only the digit"
    assert zoomed_in and zoomed_out


def test_poor_light_dims_augmented_scenes_only_when_asked(monkeypatch):
    for name in ("ZOOM_P", "INVERT_P", "CONTRAST_P", "SHUFFLE_P"):
        monkeypatch.setattr(localise, name, 0.0)
    image = np.full((128, 128, 3), 200, np.uint8)
    box = np.array([[40, 40, 60, 80]], np.float32)
    none = np.zeros((0, 4), np.float32)
    unchanged, _, _ = localise.augment(image, box, none, np.random.default_rng(0))
    assert np.array_equal(unchanged, image)
    dimmed = [localise.augment(image, box, none, np.random.default_rng(seed), poor_light_p=1.0) for seed in range(10)]
    assert all(out.mean() < 200 and np.array_equal(b, box) for out, b, _ in dimmed)       # darker, boxes kept
    assert min(out.mean() for out, _, _ in dimmed) < 120


@pytest.mark.parametrize("flag", ["--poor-light", "--noise", "--svhn-crops"])
def test_a_fraction_out_of_range_is_refused_naming_it(flag, capsys):
    with pytest.raises(SystemExit) as stop:
        localise.get_args_parser().parse_args([flag, "1.5"])
    assert stop.value.code == 2 and f"{flag}: 1.5 is not a fraction from 0 to 1" in capsys.readouterr().err
    assert localise.get_args_parser().parse_args([flag, "0.3"]).__dict__[flag[2:].replace("-", "_")] == 0.3


def _drawn(n: int, fonts=(), **fractions):
    """``training_batch`` over ``n`` black scenes with one box each, unaugmented, drawing only what
    ``fractions`` (LocaliserConfig's letter_closeups, digit_closeups, svhn_crops, noise) asks for."""
    data = {"x": np.zeros((n, 128, 128, 3), np.uint8)}
    boxes = [np.array([[10, 10, 30, 40]], np.float32)] * n
    ignore = [np.zeros((0, 4), np.float32)] * n
    none = dict(letter_closeups=0.0, digit_closeups=0.0, svhn_crops=0.0, noise=0.0)
    cfg = localise.LocaliserConfig(augment=False, **{**none, **fractions})
    return localise.training_batch(data, np.arange(n), boxes, ignore, cfg, np.random.default_rng(0), fonts)


def test_closeups_replace_scenes_with_letters_alone_or_one_digit_alone():
    from train.synth import find_fonts

    fonts = tuple(find_fonts())[:20]
    images, b, g = _drawn(6, fonts, letter_closeups=1.0)
    assert images.shape == (6, 128, 128, 3) and all(len(x) == 0 for x in b) and images.std() > 5
    images, b, g = _drawn(6, fonts, digit_closeups=1.0)
    assert all(len(x) + len(y) == 1 for x, y in zip(b, g)) and sum(len(x) for x in b) >= 4
    assert all(y1 - y0 > 20 for found in b for x0, y0, x1, y1 in found), "large digits"
    images, b, _ = _drawn(6)
    assert images.max() == 0 and all(len(x) == 1 for x in b)


def test_svhn_crops_replace_scenes_with_a_tight_crop_or_a_small_plate_on_a_wall():
    from train.synth import find_fonts

    images, b, g = _drawn(40, tuple(find_fonts())[:20], svhn_crops=1.0)
    assert images.shape == (40, 128, 128, 3) and images.std() > 5
    heights = np.array([max(y1 - y0 for _, y0, _, y1 in found) for found in b if len(found)])
    assert len(heights) >= 36, "nearly every SVHN crop keeps its middle digit"
    assert (heights > 0.6 * 128).sum() >= 10, "tight crops: the digit nearly as tall as the picture"
    assert (heights < 0.4 * 128).sum() >= 10, "small plates on a wall"


def test_noise_replaces_scenes_with_digit_free_pictures_of_random_pixels():
    images, b, g = _drawn(8, noise=1.0)
    assert images.shape == (8, 128, 128, 3) and all(len(x) + len(y) == 0 for x, y in zip(b, g))
    assert all(image.std() > 10 for image in images), "random pixels, not the scenes"
    images, b, _ = _drawn(8)
    assert images.max() == 0 and all(len(x) == 1 for x in b)


def test_a_digit_closeup_box_is_one_large_digit_near_the_middle():
    from train.scenes import closeup
    from train.synth import find_fonts

    fonts, found = tuple(find_fonts())[:20], 0
    for seed in range(8):
        scene = closeup(np.random.default_rng(seed), fonts, 128, digit=True)
        assert len(scene.boxes) + len(scene.ignore) == 1
        h, w = scene.image.shape[:2]
        for x0, y0, x1, y1 in scene.boxes:
            found += 1
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0.25 * min(h, w) <= y1 - y0, "a digit filling much of the frame"
            assert 0.2 * w < (x0 + x1) / 2 < 0.8 * w and 0.2 * h < (y0 + y1) / 2 < 0.8 * h
        assert len(closeup(np.random.default_rng(seed), fonts, 128).boxes) == 0, "letters alone: no digit"
    assert found >= 6


def test_loss_is_lower_for_the_right_answer():
    boxes = [np.array([[40, 40, 56, 72]], np.float32)]
    t = {k: torch.from_numpy(v) for k, v in localise.targets(boxes, [np.zeros((0, 4), np.float32)], 32).items()}
    wrong = torch.zeros(1, len(OUTPUTS), 32, 32)
    wrong[:, HEAT] = -4.0
    right = wrong.clone()
    (_, r, c), = t["cells"].tolist()
    right[0, HEAT] = torch.from_numpy(np.log(t["heat"][0].numpy() + 1e-3) - np.log1p(-t["heat"][0].numpy() + 1e-3))
    right[0, [OFFSET_X, OFFSET_Y, LOG_W, LOG_H], r, c] = t["regress"][0]
    assert localise.localiser_loss(right, t) < 0.5 * localise.localiser_loss(wrong, t)


def test_a_tiny_run_writes_best_and_last_and_resumes_after_an_interrupt(tmp_path, monkeypatch):
    cfg = localise.LocaliserConfig(scenes=16, val_scenes=8, epochs=2, batch_size=8, width=4, workers=1,
                                   data_dir=str(tmp_path / "data"), out=str(tmp_path / "run"))
    one_epoch = localise.train_one_epoch

    def interrupted_in_epoch_2(*args, **kwargs):
        if args[-1] == 1:
            raise KeyboardInterrupt
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(localise, "train_one_epoch", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        localise.train(cfg)
    last = tmp_path / "run" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1 and (tmp_path / "run" / "best.pt").is_file()
    assert list((tmp_path / "data" / "scenes").glob("*.npz")), "scenes are cached"
    monkeypatch.setattr(localise, "train_one_epoch", one_epoch)
    assert localise.main(["--resume", str(last)]) == 0
    assert load_checkpoint(last)["epoch"] == 2
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt["arch"]["arch"] == "locnet" and ckpt["class_names"] == list(OUTPUTS)
    assert "val_box_iou50" in ckpt["metrics"] and "training_state" not in ckpt
    assert localise.main(["--resume", str(last), "--epochs", "5"]) == 2, "a one-cycle schedule cannot grow"


def test_scene_caches_are_named_by_renderer_version(tmp_path, monkeypatch):
    """A changed renderer (a new RENDERER_VERSION) renders its own scenes instead of reading old ones."""
    cfg = localise.LocaliserConfig(data_dir=str(tmp_path), workers=1)
    first = localise.load_scenes(cfg, "val", 4, 0)
    assert [p.name for p in (tmp_path / "scenes").glob("*.npz")] == [f"val-4-seed0-128-r{localise.RENDERER_VERSION}.npz"]
    assert np.array_equal(localise.load_scenes(cfg, "val", 4, 0)["x"], first["x"])     # read back, not re-rendered
    monkeypatch.setattr(localise, "RENDERER_VERSION", localise.RENDERER_VERSION + 1)
    localise.load_scenes(cfg, "val", 4, 0)
    assert len(list((tmp_path / "scenes").glob("*.npz"))) == 2


def _arch(depth: int, width: int = 4) -> ArchConfig:
    return ArchConfig(arch="locnet", depth=depth, width=width, num_classes=len(OUTPUTS))


def _saved(net: torch.nn.Module, depth: int, width: int, path) -> str:
    save_checkpoint(make_checkpoint(_arch(depth, width), net.state_dict(), dataset="scenes",
                                    class_names=list(OUTPUTS), input_size=(128, 128), mean=MEAN, std=STD), path)
    return str(path)


def test_init_grows_a_shallower_localiser_into_a_deeper_one_that_computes_the_same(tmp_path):
    torch.manual_seed(0)
    shallow = build_network(_arch(depth=1))
    with torch.no_grad():                       # trained-looking batch-norm statistics, not the identity
        for m in shallow.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5)
    path = _saved(shallow, 1, 4, tmp_path / "shallow.pt")
    deep = build_network(_arch(depth=2))
    localise.load_init(deep, _arch(depth=2), path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(deep.eval()(x), shallow.eval()(x), atol=1e-5)
    added = deep.stages[0][2].conv2.weight
    deep.train()
    deep(x).square().mean().backward()
    assert added.grad.abs().sum() > 0, "the added blocks learn"


@pytest.mark.parametrize("run_args", [["--width", "8"], ["--depth", "1"]])
def test_init_refuses_another_width_or_a_deeper_localiser_with_a_message(tmp_path, capsys, run_args):
    path = _saved(build_network(_arch(depth=2)), 2, 4, tmp_path / "deep.pt")
    args = ["--init", path, "--width", "4", "--depth", "2", *run_args, "--out", str(tmp_path / "run"),
            "--data-dir", str(tmp_path / "data")]
    assert localise.main(args) == 2
    err = capsys.readouterr().err
    assert "locnet depth 2 width 4" in err and "the width must be the same" in err
    assert not (tmp_path / "data").exists(), "refused before rendering anything"
