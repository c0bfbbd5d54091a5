"""``main.py --evaluate``: accuracy, per-class accuracy, confusion matrix, and ``--record``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import write_tiny_checkpoint
from model.checkpoint import load_checkpoint, load_network, save_checkpoint
from model.preprocess import preprocess
from official_formats import write_cifar10, write_npz, write_svhn
from official_formats import run_cli
from train.datasets import load_npz
from train.evaluate import evaluate_checkpoint, format_report



def always_predicts(path, label: int) -> str:
    """A tiny checkpoint whose head ignores the image and always answers ``label``."""
    write_tiny_checkpoint(path)
    ckpt = load_checkpoint(path)
    ckpt["state_dict"]["fc.weight"].zero_()
    ckpt["state_dict"]["fc.bias"].zero_()
    ckpt["state_dict"]["fc.bias"][label] = 10.0
    save_checkpoint(ckpt, path)
    return str(path)


def parse_confusion(report: str) -> np.ndarray:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix")) + 2
    return np.array([[int(v) for v in line.split()[1:]] for line in lines[start:start + 10]])


def test_evaluate_prints_accuracy_per_class_and_confusion_matrix(tmp_path, capsys):
    ckpt = always_predicts(tmp_path / "c.pt", label=3)
    npz = write_npz(tmp_path / "digits.npz", 25)  # labels 0..9, 0..9, 0..4
    code, out, err = run_cli(["--evaluate", ckpt, "--eval-npz", npz], capsys)
    assert code == 0, err
    assert out.startswith("accuracy 0.1200 (3/25) on digits.npz (25 images)")
    assert "per-class accuracy:" in out
    assert "         3: 1.0000 (3 images)" in out and "         9: 0.0000 (2 images)" in out
    cm = parse_confusion(out)
    expected = np.zeros((10, 10), int)
    expected[:, 3] = [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert np.array_equal(cm, expected)


def test_evaluate_matches_the_shared_preprocessing_path(tmp_path):
    ckpt_path = write_tiny_checkpoint(tmp_path / "c.pt", seed=5)
    data = load_npz(write_npz(tmp_path / "d.npz", 30, seed=1))
    result = evaluate_checkpoint(ckpt_path, npz=str(tmp_path / "d.npz"), device="cpu")
    net, ckpt = load_network(ckpt_path)
    x = torch.stack([torch.from_numpy(preprocess(data[i][0], ckpt["input_size"], ckpt["mean"], ckpt["std"])[0])
                     for i in range(len(data))])                               # (N, 3, 32, 32)
    with torch.no_grad():
        predicted = net(x).argmax(1).numpy()
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (data.labels, predicted), 1)
    assert np.array_equal(np.asarray(result["confusion"]), expected)
    assert result["accuracy"] == pytest.approx(np.trace(expected) / 30)
    rows = expected.sum(1)
    assert result["per_class"] == pytest.approx((np.diag(expected) / np.maximum(rows, 1)).tolist())
    assert parse_confusion(format_report(result)).tolist() == expected.tolist()


def test_record_stores_the_metric_in_the_checkpoint(tmp_path, capsys):
    ckpt = always_predicts(tmp_path / "c.pt", label=0)
    before = load_checkpoint(ckpt)
    npz = write_npz(tmp_path / "street.npz", 20)
    code, _, err = run_cli(["--evaluate", ckpt, "--eval-npz", npz, "--record", "street_accuracy"], capsys)
    assert code == 0, err
    after = torch.load(ckpt, weights_only=True)
    assert after["metrics"]["street_accuracy"] == {"value": pytest.approx(0.1), "data": "street.npz (20 images)"}
    assert after["metrics"]["val_accuracy"] == before["metrics"]["val_accuracy"]  # others kept
    for k, v in before["state_dict"].items():
        assert torch.equal(after["state_dict"][k], v)
    assert not list(tmp_path.glob("*.tmp"))


def test_without_record_the_checkpoint_is_untouched(tmp_path, capsys):
    ckpt = always_predicts(tmp_path / "c.pt", label=0)
    before = (tmp_path / "c.pt").read_bytes()
    assert run_cli(["--evaluate", ckpt, "--eval-npz", write_npz(tmp_path / "d.npz", 10)], capsys)[0] == 0
    assert (tmp_path / "c.pt").read_bytes() == before


def no_downloads(monkeypatch):
    """Make any torchvision download attempt fail the test instead of reaching the network."""
    from train import datasets

    def refuse(*args, **kwargs):
        raise AssertionError("evaluation tried to download a data set")

    for cls in ("SVHN", "CIFAR10", "CIFAR100"):
        monkeypatch.setattr(datasets.tv, cls, refuse)


def test_evaluate_on_a_registered_test_split(tmp_path, capsys, monkeypatch):
    """Evaluation needs only the test file: here there is no training file to read or download."""
    no_downloads(monkeypatch)
    ckpt = always_predicts(tmp_path / "c.pt", label=0)
    write_svhn(tmp_path / "data", n_train=0, n_test=20)
    code, out, err = run_cli(["--evaluate", ckpt, "-d", "svhn", "--data-dir", tmp_path / "data"], capsys)
    assert code == 0, err
    # the .mat stores the digit 0 as 10; it must count as class 0
    assert out.startswith("accuracy 0.1000 (2/20) on SVHN test split (20 images)")


def test_cifar_evaluation_needs_only_the_test_batch(tmp_path, capsys, monkeypatch):
    no_downloads(monkeypatch)
    ckpt = always_predicts(tmp_path / "c.pt", label=0)
    folder = write_cifar10(tmp_path / "data", n_per_batch=4, n_test=20)
    for train_batch in folder.glob("data_batch_*"):
        train_batch.unlink()
    code, out, err = run_cli(["--evaluate", ckpt, "-d", "cifar10", "--data-dir", tmp_path / "data"], capsys)
    assert code == 0, err
    assert out.startswith("accuracy 0.1000 (2/20) on CIFAR-10 test split (20 images)")


@pytest.mark.parametrize("what", ["checkpoint", "npz"])
def test_evaluate_missing_file_exits_2_naming_it(tmp_path, capsys, what):
    ckpt = always_predicts(tmp_path / "c.pt", label=0) if what == "npz" else tmp_path / "absent.pt"
    npz = tmp_path / "absent.npz" if what == "npz" else write_npz(tmp_path / "d.npz", 10)
    code, _, err = run_cli(["--evaluate", ckpt, "--eval-npz", npz], capsys)
    assert code == 2 and f"absent.{'npz' if what == 'npz' else 'pt'}" in err and "Traceback" not in err


def test_synthdigits_evaluation_renders_only_the_test_split(tmp_path, monkeypatch):
    """A model trained on 1M rendered images is evaluated without rendering its training set again."""
    from train import synth
    from train.evaluate import evaluation_data
    made = []

    def fake_render(root, n, seed, split, workers, ablate=()):
        made.append((split, n, seed))
        return np.zeros((4, 32, 32, 3), np.uint8), np.arange(4)

    monkeypatch.setattr(synth, "load_or_generate", fake_render)
    ckpt = {"train_config": {"dataset": "SynthDigits", "synth_size": 1_000_000, "seed": 2}}
    data, description = evaluation_data(ckpt, None, None, str(tmp_path))
    assert made == [("test", 10_000, 2)]
    assert len(data) == 4
    # a model trained on an older generator is measured on today's renders: the description says which
    assert description.startswith(f"SynthDigits v{synth.GENERATOR_VERSION} test split")
