"""The training run: data, network, optimiser, epochs, checkpoints, resume and interruption.

``last.pt`` (with the full training state) is written after every epoch and on Ctrl-C; ``best.pt``
(weights and metadata only, small enough to ship) whenever the validation accuracy improves. The
validation split is carved from the training data; the test split is only reported, at the end,
for the best epoch.
"""
from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import ConcatDataset, Dataset, Subset

from model.checkpoint import load_checkpoint, make_checkpoint, network_from_checkpoint, save_checkpoint, seen_npz
from model.networks import ArchConfig, build_network, count_parameters
from train.config import TrainConfig
from train.datasets import DataRequest, DatasetSpec, get_dataset, load_npz, load_train_npz
from train.engine import (EpochSampler, ImageTransform, MixedEpochSampler, Runtime, Transformed, evaluate,
                          make_loader, setup_runtime, train_one_epoch)
from train.logs import append_metrics, plot_curves

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after saving ``path``."""

    def __init__(self, path: Path):
        super().__init__(f"Interrupted: state saved to {path}. Continue with --resume {path}")
        self.path = path


@dataclass
class Progress:
    """Where the run is: epochs done, batches done in the current epoch, best validation accuracy."""

    epoch: int = 0
    batches_done: int = 0
    best_accuracy: float = -1.0
    metrics: dict = field(default_factory=dict)


def split_validation(data: Dataset, val_size: int, seed: int) -> tuple[Dataset, Dataset | None]:
    """Carve a seeded validation split of ``val_size`` images out of the training data."""
    if val_size == 0:
        return data, None
    if val_size >= len(data):
        raise ValueError(f"Invalid --val-size {val_size}: the training data has only {len(data)} images.")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(data, perm[val_size:]), Subset(data, perm[:val_size])


def arch_config(cfg: TrainConfig, num_classes: int) -> ArchConfig:
    return ArchConfig(cfg.arch, cfg.depth, cfg.width, cfg.dropout, cfg.shortcut, cfg.cardinality,
                      cfg.bottleneck_width, num_classes)


def tuned_parameters(net: nn.Module, parts: tuple[str, ...]) -> list[nn.Parameter]:
    """The parameters that train: all of them, or those of the network's named top-level parts
    (``--tune``, e.g. ``conv1 group1``: surgical fine-tuning, Lee et al. 2022), the others frozen."""
    if not parts:
        return list(net.parameters())
    children = {name: child for name, child in net.named_children() if any(True for _ in child.parameters())}
    unknown = [p for p in parts if p not in children]
    if unknown:
        raise ValueError(f"Invalid --tune {' '.join(unknown)}: the parts of this network are {' '.join(children)}.")
    for name, child in children.items():
        child.requires_grad_(name in parts)
    return [p for p in net.parameters() if p.requires_grad]


def describe_train_npz(cfg: TrainConfig, n: int, per_batch: int) -> str:
    """What the --train-npz images add to a run, for the checkpoint's data description."""
    files = ", ".join(Path(p).name for p in cfg.train_npz)
    held = (f" (fold {cfg.holdout_fold} of {cfg.folds} stratified folds, seed {cfg.fold_seed}, held out)"
            if cfg.holdout_fold >= 0 else "")
    return (f"plus {n:,} labelled images of {files}{held}, {per_batch} of every {cfg.batch_size}-image batch, "
            f"with photo augmentation")


def default_out_dir(cfg: TrainConfig, spec: DatasetSpec) -> Path:
    arch = arch_config(cfg, spec.num_classes).name.lower().replace(" ", "").replace("(", "-").replace(")", "")
    return Path("checkpoints") / f"{spec.name.lower()}-{arch}"


class Run:
    """Everything a training run holds, built from a config (and a checkpoint when resuming)."""

    def __init__(self, cfg: TrainConfig, out_dir: Path, resume: dict | None = None):
        self.cfg, self.out_dir = cfg, out_dir
        self.rt: Runtime = setup_runtime(cfg.device, cfg.amp)
        self.spec = get_dataset(cfg.dataset)
        self._load_data()
        self.arch = arch_config(cfg, len(self.class_names))
        torch.manual_seed(cfg.seed)  # --seed covers weight initialisation: one command, one network
        self.net = build_network(self.arch).to(self.rt.device, memory_format=self.rt.memory_format)
        self.optimizer = torch.optim.SGD(tuned_parameters(self.net, cfg.tune), lr=cfg.lr, momentum=cfg.momentum,
                                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(cfg.milestones), cfg.gamma)
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.amp_dtype == torch.float16)
        self.progress = Progress()
        self.seen_npz = {Path(p).name for p in cfg.train_npz}   # what the weights trained on, with their start's
        if resume is not None:
            self._restore(resume)
        elif cfg.init:
            self._initialise(cfg.init)
        if cfg.eval_npz and Path(cfg.eval_npz).name in self.seen_npz:
            raise ValueError(f"Invalid --eval-npz {cfg.eval_npz}: these weights train on its images (--train-npz, or "
                             f"the run they start from did), so its accuracy would not be honest; score them on "
                             f"those images through --cross-validate only.")
        model: nn.Module = torch.compile(self.net) if cfg.compile else self.net
        if self.rt.distributed:
            model = DistributedDataParallel(model, device_ids=[self.rt.device.index] if self.rt.device.type == "cuda" else None)
        self.model = model

    def _load_data(self) -> None:
        cfg, spec, rt = self.cfg, self.spec, self.rt
        req = DataRequest(Path(cfg.data_dir), cfg.extra, cfg.synth_size, cfg.mix_synthetic, cfg.seed,
                          max(1, cfg.workers), cfg.synth_ablate)
        train_raw, test_raw = spec.load(req)
        self.class_names = list(getattr(train_raw, "classes", None) or spec.class_names)
        self.dataset_description = spec.describe(req, len(train_raw) - cfg.val_size)
        train_part, val_part = split_validation(train_raw, cfg.val_size, cfg.seed)
        eval_tf = ImageTransform(spec.input_size, spec.mean, spec.std)
        train_tf = ImageTransform(spec.input_size, spec.mean, spec.std, cfg.augment, cfg.cutout)
        train_data: Dataset = Transformed(train_part, train_tf)
        self.sampler = EpochSampler(len(train_part), cfg.seed, rt.rank, rt.world_size)
        if cfg.train_npz:
            extra = load_train_npz(cfg.train_npz, len(self.class_names), cfg.folds, cfg.holdout_fold, cfg.fold_seed)
            photo_tf = ImageTransform(spec.input_size, spec.mean, spec.std, cutout=cfg.cutout, photo=True)
            train_data = ConcatDataset([train_data, Transformed(extra, photo_tf)])
            self.sampler = MixedEpochSampler(len(train_part), len(extra), cfg.train_npz_weight, cfg.batch_size,
                                             cfg.seed, rt.rank, rt.world_size)
            self.dataset_description += "; " + describe_train_npz(cfg, len(extra), self.sampler.per_batch)
        per_rank = len(self.sampler)
        self.train_loader = make_loader(train_data, cfg.batch_size, cfg.workers, rt,
                                        self.sampler, drop_last=per_rank > cfg.batch_size)
        self.eval_loaders: dict[str, tuple[object, str]] = {}
        if val_part is not None:
            self.eval_loaders["val"] = (make_loader(Transformed(val_part, eval_tf), 256, cfg.workers, rt),
                                        f"{spec.name} validation split carved from train "
                                        f"({len(val_part):,} images, seed {cfg.seed})")
        self.test_loader = make_loader(Transformed(test_raw, eval_tf), 256, cfg.workers, rt)
        self.test_description = f"{spec.test_name} ({len(test_raw):,} images)"
        if cfg.eval_npz:
            npz = load_npz(cfg.eval_npz)
            self.eval_loaders["reported"] = (make_loader(Transformed(npz, eval_tf), 256, 0, rt),
                                             f"{Path(cfg.eval_npz).name} ({len(npz):,} images; reported only, never used for selection)")

    def _initialise(self, path: str) -> None:
        """Start from the weights of the checkpoint at ``path``; the data description names it."""
        ckpt = load_checkpoint(path)
        held = ArchConfig.from_dict(ckpt["arch"])
        if held != self.arch:
            raise ValueError(f"Invalid --init {path}: it holds a {held.name} (dropout {held.dropout}), this run "
                             f"builds a {self.arch.name} (dropout {self.arch.dropout}); give the same --arch, "
                             f"--depth, --width and --dropout.")
        self.net.load_state_dict(ckpt["state_dict"])
        tuned = f" ({' '.join(self.cfg.tune)} only)" if self.cfg.tune else ""
        self.dataset_description = f"{ckpt['dataset']}; then fine-tuned{tuned} on {self.dataset_description}"
        self.seen_npz.update(seen_npz(ckpt))

    def _restore(self, ckpt: dict) -> None:
        state = ckpt["training_state"]
        self.net.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(ckpt["epoch"], state["batches_done"], state["best_accuracy"], ckpt["metrics"])
        self.dataset_description = ckpt["dataset"]  # names the --init start of a fine-tuning run too
        self.seen_npz.update(seen_npz(ckpt))
        self.rng_state = state["rng"]

    def checkpoint(self, with_state: bool) -> dict:
        """The current weights and metadata, plus the full training state if ``with_state``."""
        state = None
        if with_state:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "scaler": self.scaler.state_dict(), "batches_done": self.progress.batches_done,
                     "best_accuracy": self.progress.best_accuracy, "rng": torch.get_rng_state()}
        return make_checkpoint(self.arch, self.net.state_dict(), dataset=self.dataset_description,
                               class_names=self.class_names, input_size=self.spec.input_size,
                               mean=self.spec.mean, std=self.spec.std, metrics=self.progress.metrics,
                               train_config=self.cfg.to_dict(), epoch=self.progress.epoch, training_state=state,
                               seen_npz=sorted(self.seen_npz))

    def seed_epoch(self, epoch: int) -> None:
        """Fix the RNG (dropout, augmentation, mixup) per epoch, or restore it mid-epoch on resume."""
        rng = getattr(self, "rng_state", None)
        if rng is not None and self.progress.batches_done:
            torch.set_rng_state(rng)
        else:
            torch.manual_seed(self.cfg.seed * 1_000_003 + epoch * 101 + self.rt.rank)
        self.rng_state = None
        self.sampler.set_epoch(epoch, self.progress.batches_done * self.cfg.batch_size)

    def run_epoch(self, epoch: int) -> dict:
        done_before = self.progress.batches_done

        def on_batch(i: int) -> None:
            self.progress.batches_done = done_before + i + 1

        self.seed_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trains at; the scheduler steps after it
        stats = train_one_epoch(self.model, self.train_loader, self.optimizer, self.scaler, self.rt,
                                self.cfg.mixup, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", on_batch=on_batch)
        self.scheduler.step()
        self.progress.epoch, self.progress.batches_done = epoch + 1, 0
        row = {"epoch": epoch + 1, "lr": lr, **stats}
        for name, (loader, _) in self.eval_loaders.items():
            row[f"{name}_accuracy"], row[f"{name}_loss"] = evaluate(self.model, loader, len(self.class_names), self.rt)
        return row

    def record(self, row: dict) -> None:
        """Write the epoch's metrics line, last.pt, and best.pt if validation improved (main rank)."""
        if not self.rt.is_main:
            return
        accuracy = row.get("val_accuracy", row["train_accuracy"])
        improved = accuracy > self.progress.best_accuracy
        if improved:
            self.progress.best_accuracy = accuracy
        self.progress.metrics = self.epoch_metrics(row)
        append_metrics(self.out_dir, {**row, "time": time.time()})
        save_checkpoint(self.checkpoint(with_state=True), self.out_dir / "last.pt")
        if improved:
            save_checkpoint(self.checkpoint(with_state=False), self.out_dir / "best.pt")
        plot_curves(self.out_dir)

    def epoch_metrics(self, row: dict) -> dict:
        metrics = {"train_accuracy": {"value": row["train_accuracy"], "data": f"{self.dataset_description} (training mode, running)"}}
        for name, (_, data) in self.eval_loaders.items():
            key = "val_accuracy" if name == "val" else "reported_accuracy"
            metrics[key] = {"value": row[f"{name}_accuracy"], "data": data, "epoch": row["epoch"]}
        return metrics

    def save_interrupted(self) -> Path:
        path = self.out_dir / "last.pt"
        if self.rt.is_main:
            save_checkpoint(self.checkpoint(with_state=True), path)
        return path

    def finish(self) -> dict:
        """Report the test accuracy of the best epoch and store it in best.pt."""
        if not self.rt.is_main:
            return {}
        best_path = self.out_dir / "best.pt"
        ckpt = load_checkpoint(best_path)
        net = network_from_checkpoint(ckpt, best_path).to(self.rt.device)
        accuracy, _ = evaluate(net, self.test_loader, len(self.class_names), self.rt)
        ckpt["metrics"]["test_accuracy"] = {"value": accuracy, "data": self.test_description, "epoch": ckpt["epoch"]}
        save_checkpoint(ckpt, best_path)
        return ckpt["metrics"]


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def fit(cfg: TrainConfig, out_dir: Path | None = None, resume: str | Path | None = None,
        epochs: int | None = None) -> dict:
    """Train to ``cfg.epochs``; returns the best checkpoint's metrics (with test accuracy).

    Raises:
        Interrupted: after saving last.pt, on Ctrl-C or SIGTERM.
        ValueError: for ``epochs`` (which extends a resumed run) not after the epochs done.
        FileExistsError: if ``out_dir`` already holds a run and ``resume`` is not given.
    """
    ckpt = None
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if "training_state" not in ckpt:
            raise ValueError(f"{resume}: holds weights only (a best.pt); resume from the run's last.pt.")
        stored = ckpt["train_config"]
        cfg = TrainConfig.from_dict(stored, workers=cfg.workers, device=cfg.device,
                                    epochs=epochs or stored["epochs"])
        if cfg.epochs < ckpt["epoch"]:
            raise ValueError(f"Invalid --epochs {cfg.epochs}: {resume} has already done {ckpt['epoch']} epochs.")
        out_dir = Path(resume).parent
    spec = get_dataset(cfg.dataset)
    out_dir = Path(out_dir or default_out_dir(cfg, spec))
    if ckpt is None and (out_dir / "last.pt").exists():
        raise FileExistsError(f"{out_dir} already holds a run. Continue it with --resume {out_dir / 'last.pt'}, "
                              f"or choose another folder with --out.")
    run = Run(cfg, out_dir, ckpt)  # loads the data first: a failed start leaves no empty folder
    out_dir.mkdir(parents=True, exist_ok=True)
    total, trained = sum(p.numel() for p in run.net.parameters()), count_parameters(run.net)
    log.info("%s, %s parameters%s, on %s; %s; writing to %s", run.arch.name, f"{total:,}",
             f" ({trained:,} of them trained)" if trained < total else "", run.rt.device, run.dataset_description,
             out_dir)
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        for epoch in range(run.progress.epoch, cfg.epochs):
            try:
                row = run.run_epoch(epoch)
            except KeyboardInterrupt:
                raise Interrupted(run.save_interrupted()) from None
            run.record(row)
            log.info("epoch %d/%d: %s", epoch + 1, cfg.epochs,
                     ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return run.finish()
