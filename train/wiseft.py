"""Weight averaging of fine-tuned models: WiSE-FT (``--wise-ft ALPHA``) and model soups (``--soup N``).

WiSE-FT, Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): the weights
``ALPHA x fine-tuned + (1 - ALPHA) x initial`` often keep what the fine-tune learned and what the
initial model knew (here: the real crops, and the renders the fine-tune drifts away from).
A uniform model soup, Wortsman et al., "Model soups" (ICML 2022): the weights of several runs
fine-tuned from the same start (other seeds) averaged, which smooths out one run's luck.
Every floating-point tensor is averaged, BatchNorm's running statistics included; integer
counters are the first checkpoint's. The averaged checkpoint carries no metrics: the first run's
accuracies describe that run's weights, not the average (measure it with ``--evaluate --record``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from model.checkpoint import load_checkpoint, save_checkpoint, seen_npz


def _mixed(paths: Sequence[str | Path], weights: Sequence[float], hint: str) -> dict:
    """The first checkpoint of ``paths`` (weights only) with each floating-point tensor replaced by
    the ``weights``-weighted sum of the checkpoints' tensors.

    Raises:
        ValueError: if the checkpoints' tensors differ in name or shape (``hint`` says what to give).
    """
    ckpts = [load_checkpoint(p) for p in paths]
    ckpt = ckpts[0]
    ckpt.pop("training_state", None)
    ckpt["metrics"] = {}
    ckpt["seen_npz"] = sorted({name for c in ckpts for name in seen_npz(c)})   # what any of them trained on
    states = [c["state_dict"] for c in ckpts]
    mixed = {}
    for name, tensor in ckpt["state_dict"].items():
        for path, state in zip(paths[1:], states[1:]):
            if name not in state or state[name].shape != tensor.shape:
                raise ValueError(f"{path}: its weights do not match {paths[0]}'s ({name}); {hint}")
        mixed[name] = (sum(w * s[name].float() for w, s in zip(weights, states)).to(tensor.dtype)
                       if tensor.is_floating_point() else tensor)
    ckpt["state_dict"] = mixed
    return ckpt


def wise_ft(finetuned: str | Path, initial: str | Path, alpha: float, out: str | Path) -> Path:
    """Write ``out``: the checkpoint ``finetuned`` (weights only) with its weights averaged with
    ``initial``'s at ``alpha``; its dataset line says so. Returns ``out``.

    Raises:
        ValueError: if alpha is outside (0, 1] or the two checkpoints' tensors differ in shape.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"Invalid --wise-ft {alpha}: it must be in (0, 1].")
    ckpt = _mixed([finetuned, initial], [alpha, 1 - alpha],
                  "--wise-ft needs the checkpoint the run was initialised from (--init).")
    ckpt["dataset"] += f"; WiSE-FT: weights {alpha:g} x this fine-tune + {1 - alpha:g} x the weights it started from ({Path(initial).name})"
    save_checkpoint(ckpt, out)
    return Path(out)


def average_weights(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Write ``out``: the uniform average of the checkpoints ``paths`` (a model soup; runs of one
    protocol from the same start), the first one's metadata saying so. Returns ``out``.

    Raises:
        ValueError: if the checkpoints' tensors differ in shape.
    """
    ckpt = _mixed(paths, [1 / len(paths)] * len(paths), "a soup averages runs of one architecture from one start.")
    ckpt["dataset"] += (f"; model soup: the weights of {len(paths)} such runs averaged "
                        f"({', '.join(Path(p).parent.parent.name + '/' + Path(p).parent.name for p in paths)})")
    save_checkpoint(ckpt, out)
    return Path(out)
