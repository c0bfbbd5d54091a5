"""Evaluate a checkpoint: accuracy, per-class accuracy and confusion matrix, through the same
preprocessing the server uses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from model.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint, seen_npz
from train.datasets import DataRequest, get_dataset, load_npz
from train.engine import ImageTransform, Transformed, confusion_matrix, make_loader, setup_runtime


def evaluation_data(ckpt: dict, dataset: str | None, npz: str | None, data_dir: str) -> tuple[Dataset, str]:
    """The data to evaluate on: an .npz file, or the test split of a registered data set."""
    if npz:
        data = load_npz(npz)
        return data, f"{Path(npz).name} ({len(data):,} images)"
    spec = get_dataset(dataset or ckpt.get("train_config", {}).get("dataset", "SVHN"))
    cfg = ckpt.get("train_config", {})
    req = DataRequest(Path(data_dir), synth_size=cfg.get("synth_size", 100_000), seed=cfg.get("seed", 0))
    test = spec.load_test(req)
    return test, f"{spec.test_name} ({len(test):,} images)"


def evaluate_checkpoint(path: str, dataset: str | None = None, npz: str | None = None,
                        data_dir: str = "./data", device: str = "auto", record: str | None = None) -> dict:
    """Measure a checkpoint. With ``record``, store the accuracy in its metrics under that name.

    Returns:
        {"accuracy", "per_class", "confusion", "data", "class_names"}.

    Raises:
        ValueError: if ``npz`` holds images the checkpoint trained on (its accuracy there would not be
            honest; its cross-validation scores them).
    """
    ckpt = load_checkpoint(path)
    if npz and Path(npz).name in seen_npz(ckpt):
        raise ValueError(f"{path} trained on {Path(npz).name}: an accuracy on images it trained on is not honest; "
                         f"score it through its cross-validation (--cross-validate, and --crossval DIR in the benches).")
    rt = setup_runtime(device, amp=False)
    net = network_from_checkpoint(ckpt, path).to(rt.device)
    data, description = evaluation_data(ckpt, dataset, npz, data_dir)
    transform = ImageTransform(ckpt["input_size"], ckpt["mean"], ckpt["std"])
    cm, _ = confusion_matrix(net, make_loader(Transformed(data, transform), 256, 0, rt),
                             len(ckpt["class_names"]), rt)
    accuracy = float(np.trace(cm) / max(cm.sum(), 1))
    per_class = (np.diag(cm) / np.maximum(cm.sum(1), 1)).tolist()
    if record:
        ckpt["metrics"][record] = {"value": accuracy, "data": description}
        save_checkpoint(ckpt, path)
    return {"accuracy": accuracy, "per_class": per_class, "confusion": cm.tolist(), "data": description,
            "class_names": ckpt["class_names"]}


def format_report(result: dict) -> str:
    """Accuracy, per-class accuracy and the confusion matrix as text."""
    names, cm = result["class_names"], np.asarray(result["confusion"])
    lines = [f"accuracy {result['accuracy']:.4f} ({int(np.trace(cm))}/{int(cm.sum())}) on {result['data']}",
             "per-class accuracy:"]
    lines += [f"  {n:>10}: {a:.4f} ({int(cm[i].sum())} images)" for i, (n, a) in enumerate(zip(names, result["per_class"]))]
    if len(names) <= 20:
        width = max(5, len(str(cm.max())) + 1)
        lines.append("confusion matrix (rows: true class, columns: predicted):")
        lines.append(" " * 11 + "".join(f"{n[:width - 1]:>{width}}" for n in names))
        lines += [f"  {n[:8]:>8} " + "".join(f"{v:>{width}}" for v in row) for n, row in zip(names, cm)]
    return "\n".join(lines)
