"""Tiny data files in the official SVHN and CIFAR formats, written by the tests themselves.

Images are made so that a class is visible (its colour), which lets a network learn something in
a few steps and lets a test check that images and labels stay paired.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import scipy.io

CIFAR10_TEST_NAMES = [f"c10_{n}" for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "lorry")]


def class_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """(N, 32, 32, 3) uint8: a colour per class plus noise."""
    rng = np.random.default_rng(seed)
    hues = rng.integers(0, 256, size=(num_classes, 3))
    x = hues[labels][:, None, None, :] + rng.integers(-30, 31, size=(len(labels), 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def write_svhn(root: Path, n_train: int, n_test: int, extra: int = 0, seed: int = 0) -> Path:
    """``root/svhn/{train,test}_32x32.mat``: X uint8 (32, 32, 3, N), y (N, 1) with 10 for the digit 0.

    Returns:
        the svhn folder.
    """
    folder = Path(root) / "svhn"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test), ("extra", extra)):
        if n == 0:
            continue
        digits = np.arange(n) % 10
        x = class_images(digits, 10, seed)                                # (N, 32, 32, 3)
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]   # (N, 1), 1..10
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": y})
    return folder


def read_svhn_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """What a test wrote: (N, 32, 32, 3) images and (N,) labels as stored (1..10)."""
    m = scipy.io.loadmat(path)
    return m["X"].transpose(3, 0, 1, 2), m["y"].ravel()


def _cifar_batch(n: int, num_classes: int, seed: int, label_key: str) -> dict:
    labels = np.arange(n) % num_classes
    x = class_images(labels, num_classes, seed)                            # (N, 32, 32, 3)
    data = x.transpose(0, 3, 1, 2).reshape(n, 3072)                        # rows: R plane, G plane, B plane
    return {"data": data, label_key: labels.tolist(), "batch_label": "test batch"}


def _pickle(obj, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, n_per_batch: int, n_test: int, names=CIFAR10_TEST_NAMES, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/``: data_batch_1..5, test_batch, batches.meta (label_names)."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        _pickle(_cifar_batch(n_per_batch, 10, seed, "labels"), folder / f"data_batch_{i}")
    _pickle(_cifar_batch(n_test, 10, seed, "labels"), folder / "test_batch")
    _pickle({"label_names": list(names), "num_cases_per_batch": n_per_batch}, folder / "batches.meta")
    return folder


def write_cifar100(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """``root/cifar-100-python/``: train, test (fine_labels, coarse_labels), meta (fine_label_names)."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        batch = _cifar_batch(n, 100, seed, "fine_labels")
        batch["coarse_labels"] = [label // 5 for label in batch["fine_labels"]]
        _pickle(batch, folder / split)
    _pickle({"fine_label_names": [f"fine{i:03d}" for i in range(100)],
             "coarse_label_names": [f"coarse{i:02d}" for i in range(20)]}, folder / "meta")
    return folder


def write_npz(path: Path, n: int, seed: int = 0) -> Path:
    """An .npz of ``x`` uint8 (N, 32, 32, 3) and ``y`` (N,) digits, as ``--eval-npz`` reads."""
    y = np.arange(n) % 10
    np.savez(path, x=class_images(y, 10, seed), y=y)
    return Path(path)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """``main.py argv`` in-process: (exit code, stdout, stderr)."""
    from train import cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err
