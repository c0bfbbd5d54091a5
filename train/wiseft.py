"""WiSE-FT: a fine-tuned model's weights averaged with those it started from (``--wise-ft ALPHA``).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): the weights
``ALPHA x fine-tuned + (1 - ALPHA) x initial`` often keep what the fine-tune learned and what the
initial model knew (here: the real crops, and the renders the fine-tune drifts away from). Every
floating-point tensor is averaged, BatchNorm's running statistics included; integer counters are
the fine-tune's.
"""
from __future__ import annotations

from pathlib import Path

from model.checkpoint import load_checkpoint, save_checkpoint


def wise_ft(finetuned: str | Path, initial: str | Path, alpha: float, out: str | Path) -> Path:
    """Write ``out``: the checkpoint ``finetuned`` (weights only) with its weights averaged with
    ``initial``'s at ``alpha``; its dataset line says so. Returns ``out``.

    Raises:
        ValueError: if alpha is outside (0, 1] or the two checkpoints' tensors differ in shape.
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"Invalid --wise-ft {alpha}: it must be in (0, 1].")
    ckpt, start = load_checkpoint(finetuned), load_checkpoint(initial)["state_dict"]
    ckpt.pop("training_state", None)
    averaged = {}
    for name, tensor in ckpt["state_dict"].items():
        if name not in start or start[name].shape != tensor.shape:
            raise ValueError(f"{initial}: its weights do not match {finetuned}'s ({name}); --wise-ft needs the "
                             f"checkpoint the run was initialised from (--init).")
        averaged[name] = ((alpha * tensor.float() + (1 - alpha) * start[name].float()).to(tensor.dtype)
                          if tensor.is_floating_point() else tensor)
    ckpt["state_dict"] = averaged
    ckpt["dataset"] += f"; WiSE-FT: weights {alpha:g} x this fine-tune + {1 - alpha:g} x {Path(initial).name}"
    save_checkpoint(ckpt, out)
    return Path(out)
