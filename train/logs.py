"""Per-epoch metrics: one JSON line per epoch beside the checkpoints, and a PNG of the curves."""
from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def append_metrics(out_dir: Path, row: dict) -> None:
    """Append one epoch's metrics as a JSON line (flushed, so a kill loses at most this line)."""
    with open(out_dir / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(out_dir: Path) -> list[dict]:
    path = out_dir / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(out_dir: Path) -> Path | None:
    """Plot loss and accuracy per epoch (train, validation and any reported data) to curves.png."""
    rows = read_metrics(out_dir)
    if not rows:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if all(key in r for r in rows):
            ax_loss.plot(epochs, [r[key] for r in rows], label=label)
    acc_keys = [k for k in rows[-1] if k.endswith("accuracy")]
    for key in acc_keys:
        ax_acc.plot(epochs, [r.get(key) for r in rows], label=key.replace("_accuracy", ""))
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out_dir / CURVES_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
