"""k-fold cross-validation of training on a small labelled image set (``--cross-validate NPZ``).

The images of NPZ are dealt into k folds stratified by label and fixed by a seed. For each fold, one
run (the configuration given, typically a fine-tune with ``--init``) trains with the other k-1
folds mixed into its batches, and is scored on the fold it never saw. One more run follows the same
protocol without any NPZ images (same steps, all from the base data) and is scored on every fold:
the baseline the real images must beat (other ``--train-npz`` files, if given, stay in both). Each run lives in its own folder under the output folder
and is resumed, or skipped when finished, by running the same command again. Models are scored
with the weights of their last epoch, in fp32, as ``--evaluate`` scores. With ``--soup N`` every run
is N runs (seeds SEED to SEED+N-1, each protocol in ``OUT/seed-S/``) whose weights are averaged, a
model soup; with ``--wise-ft ALPHA`` those weights are then averaged with ``--init``'s
(``train.wiseft``, for the baseline too), and the fine-tunes alone are reported beside.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from model.checkpoint import load_checkpoint, network_from_checkpoint, save_checkpoint, seen_npz
from train.config import TrainConfig
from train.datasets import ArrayDataset, get_dataset, load_npz, stratified_folds
from train.engine import ImageTransform, Transformed, make_loader, setup_runtime, to_device
from train.loop import fit
from train.wiseft import average_weights, wise_ft

log = logging.getLogger(__name__)


def train_or_resume(cfg: TrainConfig, out_dir: Path) -> Path:
    """Train ``cfg`` into ``out_dir``, resume it there, or do nothing if it has finished. Returns last.pt."""
    last = out_dir / "last.pt"
    if not last.exists():
        fit(cfg, out_dir)
    else:
        ckpt = load_checkpoint(last)
        if ckpt["epoch"] < cfg.epochs or ckpt["training_state"]["batches_done"]:
            log.info("resuming %s", last)
            fit(cfg, resume=last, epochs=cfg.epochs)
        else:
            log.info("%s has finished its %d epochs: scoring it", last, cfg.epochs)
    return last


def scored_name(soup: int, wise_ft: float) -> str:
    """The file name, in a run's folder, of the model a protocol scores and ships."""
    return f"wise-ft-{wise_ft:g}.pt" if wise_ft else "soup.pt" if soup > 1 else "last.pt"


def fold_models(out_dir: str | Path, labels: np.ndarray) -> tuple[list[Path], np.ndarray]:
    """What a finished cross-validation in ``out_dir`` scored, for benches that must read each
    image of its NPZ (whose ``labels`` the caller loaded) with a model that never saw it: the model
    of every fold, and the fold of every image, dealt as the cross-validation dealt them.

    Raises:
        FileNotFoundError: one line naming what is missing (no crossval.json, or a fold's model).
        ValueError: if ``labels`` are not as many as the images it cross-validated.
    """
    out_dir = Path(out_dir)
    record = out_dir / "crossval.json"
    if not record.is_file():
        raise FileNotFoundError(f"{record}: no such file; run the cross-validation (--cross-validate) into {out_dir} first")
    result = json.loads(record.read_text())
    if len(labels) != result["images"]:
        raise ValueError(f"{record} cross-validated {result['images']} images ({result['npz']}), not {len(labels)}")
    protocol = result["protocol"]
    name = scored_name(protocol.get("soup", 1), protocol.get("wise_ft", 0.0))
    models = [out_dir / f"fold-{f}" / name for f in range(len(result["folds"]))]
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file; run the cross-validation into {out_dir} again")
    return models, stratified_folds(labels, len(models), protocol["fold_seed"])


def trained_on(checkpoint: str | Path, npz: str | Path) -> bool:
    """Whether the checkpoint's weights trained on a file of ``npz``'s name, in their own run or one
    they started from or were averaged with (``model.checkpoint.seen_npz``): then they must be scored
    on those images through their cross-validation (``fold_models``)."""
    return Path(npz).name in seen_npz(load_checkpoint(checkpoint))


def train_runs(cfg: TrainConfig, out_dir: Path, name: str, **changes) -> tuple[Path, Path]:
    """Train (or resume, or skip when finished) the run ``name`` ("fold-2", "no-real", "all") of the
    protocol with ``changes``: one run in ``out_dir/name``, or with ``cfg.soup`` N one per seed in
    ``out_dir/seed-S/name``.

    Returns:
        (the fine-tune alone: its last.pt, or the soup of the N written in ``out_dir/name``; the model
        scored and shipped: that, or with ``cfg.wise_ft`` its WiSE-FT average with ``cfg.init``,
        written beside it). Both are made again each time: it is cheap.
    """
    folder = out_dir / name
    if cfg.soup == 1:
        alone = train_or_resume(replace(cfg, out=str(folder), **changes), folder)
    else:
        seeds = range(cfg.seed, cfg.seed + cfg.soup)
        lasts = [train_or_resume(replace(cfg, seed=s, out=str(out_dir / f"seed-{s}" / name), **changes),
                                 out_dir / f"seed-{s}" / name) for s in seeds]
        folder.mkdir(parents=True, exist_ok=True)
        alone = average_weights(lasts, folder / "soup.pt")
    if not cfg.wise_ft:
        return alone, alone
    return alone, wise_ft(alone, cfg.init, cfg.wise_ft, folder / scored_name(cfg.soup, cfg.wise_ft))


@torch.inference_mode()
def correct_per_image(path: Path, data: ArrayDataset, device: str = "auto") -> np.ndarray:
    """1 for every image of ``data`` the checkpoint at ``path`` reads right, else 0 (fp32)."""
    ckpt = load_checkpoint(path)
    rt = setup_runtime(device, amp=False)
    net = network_from_checkpoint(ckpt, path).to(rt.device).eval()
    transform = ImageTransform(ckpt["input_size"], ckpt["mean"], ckpt["std"])
    hits = []
    for x, y in make_loader(Transformed(data, transform), 256, 0, rt):
        x, y = to_device(x, y, rt)
        hits.append((net(x).argmax(1) == y).cpu().numpy())
    return np.concatenate(hits).astype(int)


def cross_validate(cfg: TrainConfig, npz: str, out_dir: Path) -> dict:
    """Train cfg.folds runs with NPZ's other folds in their batches and one without; score each fold.

    Returns:
        {"folds": [{"fold", "images", "with", "without"}...], "with", "without" (pooled accuracy
        over all images, each scored by the run that never saw it), "mean_with", "mean_without"
        (mean of the fold accuracies), "protocol"}; also written to ``out_dir/crossval.json``.
    """
    if cfg.init and trained_on(cfg.init, npz):
        raise ValueError(f"Invalid --init {cfg.init} for --cross-validate {npz}: it trained on {Path(npz).name} "
                         f"already, so every fold would be scored on images its start saw; start from a model "
                         f"that never saw them (the README says how to get the SynthDigits-only one).")
    data = load_npz(npz, get_dataset(cfg.dataset).num_classes)
    fold_of = stratified_folds(data.labels, cfg.folds, cfg.fold_seed)
    hits_with, hits_without = np.zeros(len(data), int), np.zeros(len(data), int)
    hits_finetune = np.zeros(len(data), int)      # with --wise-ft: the fine-tunes alone
    held = [np.flatnonzero(fold_of == f) for f in range(cfg.folds)]
    for f, idx in enumerate(held):  # the runs with real images first: they are the point
        alone, scored = train_runs(cfg, out_dir, f"fold-{f}", train_npz=(npz, *cfg.train_npz), holdout_fold=f)
        fold_data = ArrayDataset(data.images[idx], data.labels[idx])
        hits_with[idx] = correct_per_image(scored, fold_data, cfg.device)
        if cfg.wise_ft:
            hits_finetune[idx] = correct_per_image(alone, fold_data, cfg.device)
        log.info("fold %d: %.4f with the other folds' images", f, hits_with[idx].mean())
    base = replace(cfg, holdout_fold=-1)
    _, baseline = train_runs(base, out_dir, "no-real", train_npz=cfg.train_npz)
    hits_without[:] = correct_per_image(baseline, data, cfg.device)
    rows = [{"fold": f, "images": len(idx), "with": float(hits_with[idx].mean()),
             "without": float(hits_without[idx].mean())} for f, idx in enumerate(held)]
    if cfg.wise_ft:
        for row, idx in zip(rows, held):
            row["finetune_alone"] = float(hits_finetune[idx].mean())
    result = {"npz": str(npz), "images": len(data), "folds": rows,
              "with": float(hits_with.mean()), "without": float(hits_without.mean()),
              "mean_with": float(np.mean([r["with"] for r in rows])),
              "mean_without": float(np.mean([r["without"] for r in rows])),
              "protocol": base.to_dict()}
    if cfg.wise_ft:
        result["finetune_alone"] = float(hits_finetune.mean())
    (out_dir / "crossval.json").write_text(json.dumps(result, indent=2))
    return result


def train_final(cfg: TrainConfig, npz: str, out_dir: Path, result: dict) -> Path:
    """Train the cross-validated protocol on every image of NPZ into ``out_dir/all``; write
    ``final.pt`` there: its last epoch's weights, WiSE-FT'd if the folds were, carrying the
    cross-validated accuracy. Returns its path.
    """
    _, scored = train_runs(cfg, out_dir, "all", train_npz=(npz, *cfg.train_npz), holdout_fold=-1)
    ckpt = load_checkpoint(scored)
    ckpt.pop("training_state", None)
    k, n = len(result["folds"]), result["images"]
    ckpt["metrics"]["crossval_accuracy"] = {
        "value": result["with"],
        "data": (f"{k}-fold cross-validation on {Path(npz).name} ({n} images; folds stratified by label, "
                 f"seed {cfg.fold_seed}): each image scored by a {'soup of ' + str(cfg.soup) + ' runs' if cfg.soup > 1 else 'run'} "
                 f"of this protocol that never saw its fold; "
                 f"mean of the folds {result['mean_with']:.4f}; the same protocol without them "
                 f"{result['without']:.4f}. This model itself trained on all {n}."),
    }
    path = out_dir / "all" / "final.pt"
    save_checkpoint(ckpt, path)
    return path


def format_crossval(result: dict) -> str:
    """The per-fold table and the means, as text."""
    n = result["images"]
    alpha = result["protocol"].get("wise_ft", 0.0)
    soup, seed = result["protocol"].get("soup", 1), result["protocol"]["seed"]
    alone = "finetune_alone" in result
    lines = [f"{len(result['folds'])}-fold cross-validation on {Path(result['npz']).name} ({n} images): "
             f"each fold scored by a run that never saw it"
             + (f"; model soup of {soup} runs per fold (seeds {seed} to {seed + soup - 1})" if soup > 1 else "")
             + (f"; WiSE-FT {alpha:g} with the --init weights" if alpha else ""),
             f"{'fold':>6} {'images':>7} {'with real':>10} {'without real':>13}" + (f" {'fine-tune alone':>16}" if alone else "")]
    for r in result["folds"]:
        lines.append(f"{r['fold']:>6} {r['images']:>7} {r['with']:>10.4f} {r['without']:>13.4f}"
                     + (f" {r['finetune_alone']:>16.4f}" if alone else ""))
    lines.append(f"{'mean':>6} {'':>7} {result['mean_with']:>10.4f} {result['mean_without']:>13.4f}")
    lines.append(f"{'all':>6} {n:>7} {result['with']:>10.4f} {result['without']:>13.4f}"
                 + (f" {result['finetune_alone']:>16.4f}" if alone else "")
                 + f"   ({round(result['with'] * n)}/{n} and {round(result['without'] * n)}/{n})")
    return "\n".join(lines)
