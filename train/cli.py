"""Command line of ``main.py``: train a network, or evaluate a checkpoint.

Flags left unset take the data set's recipe (the WRN paper's, see train/datasets.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields

from model.checkpoint import CheckpointError
from model.networks import ARCHS
from train.config import TrainConfig
from train.datasets import DataError, dataset_names, get_dataset

RECIPE_FLAGS = ("epochs", "lr", "milestones", "gamma", "dropout", "depth", "width", "val_size")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a Wide ResNet (or ResNet/ResNeXt), or evaluate a checkpoint.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-d", "--dataset", default="SVHN", help=f"one of {', '.join(dataset_names())} (case-insensitive)")
    p.add_argument("--data-dir", default="./data", help="where data sets are found or downloaded to")
    p.add_argument("--extra", action="store_true", help="SVHN: add the 531,131-image extra split (as the paper)")
    p.add_argument("--synth-size", type=int, default=100_000, help="SynthDigits: training images to render")
    p.add_argument("--synth-ablate", nargs="+", default=[], metavar="PART",
                   help="SynthDigits: switch generator parts off for an ablation study "
                        "(fonts, neighbours, colour, distortion, degradation)")
    p.add_argument("--mix-synthetic", type=float, default=0.0, metavar="FRACTION",
                   help="add FRACTION x (real training images) SynthDigits images to the training set")
    p.add_argument("--val-size", type=int, help="validation images carved from train (recipe: 5000)")
    p.add_argument("--arch", default="wrn", choices=ARCHS, help="network family")
    p.add_argument("--depth", type=int, help="layers: 6n+4 (wrn), 6n+2 (resnet), 9n+2 (resnext); recipe default")
    p.add_argument("--width", type=int, help="WRN widen factor k (recipe default)")
    p.add_argument("--dropout", type=float, help="WRN dropout between the convolutions (recipe default)")
    p.add_argument("--shortcut", default="conv", choices=("conv", "pool"), help="WRN shortcut where the shape changes")
    p.add_argument("--cardinality", type=int, default=8, help="ResNeXt groups")
    p.add_argument("--bottleneck-width", type=int, default=64, help="ResNeXt channels per group in stage 1")
    p.add_argument("--epochs", type=int, help="epochs (recipe default)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (per process under torchrun)")
    p.add_argument("--lr", type=float, help="initial learning rate (recipe default)")
    p.add_argument("--milestones", type=int, nargs="+", help="epochs at which lr is multiplied by gamma")
    p.add_argument("--gamma", type=float, help="lr factor at each milestone (recipe default)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="L2 weight decay")
    p.add_argument("--cutout", type=int, default=0, metavar="N", help="cutout square size in pixels (0: off)")
    p.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup Beta(alpha, alpha) (0: off)")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=None,
                   help="no pad-crop-flip even where the recipe uses it")
    p.add_argument("--augment", dest="augment", action="store_true", help="pad-4 crop and flip even for SVHN")
    p.add_argument("--seed", type=int, default=0, help="seed for data split, order, init and dropout")
    p.add_argument("--workers", type=int, default=None, help="data-loading processes (default: 4 on GPU, 0 on CPU)")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="full fp32 (default: bf16 autocast on CUDA and on CPUs with native bf16, fp16 on older GPUs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--out", default=None, help="run folder (default: checkpoints/<dataset>-<arch>/)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run saved in PATH (its last.pt) with its stored settings; "
                        "--epochs may extend it")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from the weights of CKPT (same architecture) with a fresh optimiser and "
                        "schedule: fine-tuning")
    p.add_argument("--tune", nargs="+", default=[], metavar="PART",
                   help="with --init: train only these top-level parts of the network (WRN: conv1 group1 group2 "
                        "group3 bn fc), the others keep --init's weights (batch-norm statistics still update)")
    p.add_argument("--eval-npz", default=None, metavar="NPZ",
                   help="labelled images (x uint8 NHWC, y) to report each epoch or evaluate on; never trained on")
    p.add_argument("--train-npz", nargs="+", default=[], metavar="NPZ",
                   help="labelled images (x uint8 (N, H, W, 3), y int64 (N,)) to add to the training batches, "
                        "with photo augmentation (small affine, colour, channel shuffle, inversion)")
    p.add_argument("--train-npz-weight", type=float, default=0.25, metavar="FRACTION",
                   help="fraction of every batch drawn from --train-npz (an epoch keeps its step count)")
    p.add_argument("--cross-validate", default=None, metavar="NPZ",
                   help="k-fold cross-validation: train --folds runs, each with the other folds of NPZ in its "
                        "batches (at --train-npz-weight), score each on its held-out fold, beside one run "
                        "of the same protocol without NPZ; run it again to resume")
    p.add_argument("--folds", type=int, default=5, help="--cross-validate: folds, stratified by label")
    p.add_argument("--fold-seed", type=int, default=0, help="--cross-validate: seed that deals the folds")
    p.add_argument("--final", action="store_true",
                   help="--cross-validate: then train the same protocol on all of NPZ into OUT/all/ and write "
                        "OUT/all/final.pt, its last weights with the cross-validated accuracy in its metrics")
    p.add_argument("--wise-ft", type=float, default=0.0, metavar="ALPHA",
                   help="--cross-validate/--final: score and ship ALPHA x the fine-tuned weights + (1 - ALPHA) x "
                        "--init's (WiSE-FT; 0.5 is an even average), written beside each run's last.pt")
    p.add_argument("--soup", type=int, default=1, metavar="N",
                   help="--cross-validate/--final: train N runs of each (seeds --seed to --seed+N-1, in OUT/seed-S/) "
                        "and score and ship their averaged weights (a model soup), before --wise-ft")
    p.add_argument("--evaluate", default=None, metavar="CKPT", help="evaluate CKPT and exit")
    p.add_argument("--record", default=None, metavar="NAME",
                   help="with --evaluate: store the accuracy in the checkpoint's metrics under NAME")
    return p


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Command line -> frozen config, filling unset flags from the data set's recipe."""
    recipe = get_dataset(args.dataset).recipe
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    for name in RECIPE_FLAGS:
        if values.get(name) is None:
            values[name] = getattr(recipe, name)
    if values.get("augment") is None:
        values["augment"] = recipe.augment
    if values.get("workers") is None:
        import torch
        values["workers"] = 4 if torch.cuda.is_available() else 0
    values["milestones"] = tuple(values["milestones"])
    values["synth_ablate"] = tuple(values.get("synth_ablate") or ())
    values["dataset"] = get_dataset(args.dataset).name
    values["eval_npz"] = args.eval_npz or ""
    values["out"] = args.out or ""
    values["init"] = args.init or ""
    values["train_npz"] = tuple(args.train_npz or ())
    values["tune"] = tuple(args.tune or ())
    cfg = TrainConfig(**values)
    from train.loop import arch_config
    arch_config(cfg, 10)  # validate the architecture before any data is loaded
    return cfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    parser = get_args_parser()
    args = parser.parse_args(argv)
    try:
        if args.evaluate:
            from train.evaluate import evaluate_checkpoint, format_report
            dataset = args.dataset if "-d" in (argv or sys.argv) or "--dataset" in (argv or sys.argv) else None
            result = evaluate_checkpoint(args.evaluate, dataset, args.eval_npz, args.data_dir, args.device, args.record)
            print(format_report(result))
            return 0
        from train.loop import Interrupted, fit
        cfg = build_config(args)
        try:
            if args.cross_validate:
                from pathlib import Path

                from train.crossval import cross_validate, format_crossval, train_final
                if not cfg.out:
                    raise ValueError("--cross-validate needs --out FOLDER (one sub-folder per run).")
                result = cross_validate(cfg, args.cross_validate, Path(cfg.out))
                print(format_crossval(result))
                if args.final:
                    print(f"final model: {train_final(cfg, args.cross_validate, Path(cfg.out), result)}")
                return 0
            metrics = fit(cfg, cfg.out or None, args.resume, epochs=args.epochs)
        except Interrupted as e:
            print(f"\n{e}", file=sys.stderr)
            return 130
        print(json.dumps(metrics, indent=2))
        return 0
    except (ValueError, DataError, CheckpointError, FileExistsError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
