"""Training configuration: built once from the command line, frozen, stored in checkpoints."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Plain values only, so it can live in a checkpoint."""

    dataset: str = "SVHN"
    data_dir: str = "./data"
    extra: bool = False
    synth_size: int = 100_000
    synth_ablate: tuple[str, ...] = ()
    mix_synthetic: float = 0.0
    val_size: int = 5000
    arch: str = "wrn"
    depth: int = 16
    width: int = 8
    dropout: float = 0.4
    shortcut: str = "conv"
    cardinality: int = 8
    bottleneck_width: int = 64
    epochs: int = 160
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (80, 120)
    gamma: float = 0.1
    augment: bool = False
    cutout: int = 0
    mixup: float = 0.0
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    out: str = ""
    init: str = ""  # checkpoint whose weights the run starts from (fine-tuning), "" for random
    eval_npz: str = ""  # extra data reported each epoch, never used for selection
    train_npz: tuple[str, ...] = ()  # labelled .npz images added to the training batches
    train_npz_weight: float = 0.25  # fraction of every batch drawn from train_npz
    folds: int = 5  # cross-validation: stratified folds of the train_npz images
    fold_seed: int = 0
    holdout_fold: int = -1  # the fold of train_npz left out of training (-1: none)
    wise_ft: float = 0.0  # --cross-validate/--final: average the weights with --init's at this alpha (0: off)
    soup: int = 1  # --cross-validate/--final: runs per protocol (seeds seed..seed+soup-1), their weights averaged
    tune: tuple[str, ...] = ()  # with init: the network's top-level parts that train, the rest frozen (): all

    def __post_init__(self):
        checks = [
            (self.epochs >= 1, f"Invalid --epochs {self.epochs}: it must be >= 1."),
            (self.batch_size >= 1, f"Invalid --batch-size {self.batch_size}: it must be >= 1."),
            (self.lr > 0, f"Invalid --lr {self.lr}: it must be > 0."),
            (self.weight_decay >= 0, f"Invalid --weight-decay {self.weight_decay}: it must be >= 0."),
            (0 < self.gamma <= 1, f"Invalid --gamma {self.gamma}: it must be in (0, 1]."),
            (list(self.milestones) == sorted(self.milestones) and all(m > 0 for m in self.milestones),
             f"Invalid --milestones {list(self.milestones)}: they must be increasing positive epochs."),
            (self.val_size >= 0, f"Invalid --val-size {self.val_size}: it must be >= 0."),
            (self.cutout >= 0, f"Invalid --cutout {self.cutout}: it must be >= 0."),
            (self.mixup >= 0, f"Invalid --mixup {self.mixup}: it must be >= 0."),
            (self.synth_size >= 1, f"Invalid --synth-size {self.synth_size}: it must be >= 1."),
            (self.mix_synthetic >= 0, f"Invalid --mix-synthetic {self.mix_synthetic}: it must be >= 0."),
            (self.workers >= 0, f"Invalid --workers {self.workers}: it must be >= 0."),
            (0 < self.train_npz_weight < 1,
             f"Invalid --train-npz-weight {self.train_npz_weight}: it must be in (0, 1)."),
            (self.folds >= 2, f"Invalid --folds {self.folds}: it must be >= 2."),
            (0 <= self.wise_ft <= 1, f"Invalid --wise-ft {self.wise_ft}: it must be in (0, 1]."),
            (not self.wise_ft or self.init, "--wise-ft averages with the --init checkpoint's weights: give --init."),
            (self.soup >= 1, f"Invalid --soup {self.soup}: it must be >= 1."),
            (not self.tune or self.init, "--tune trains part of a network that starts from --init: give --init."),
            (-1 <= self.holdout_fold < self.folds,
             f"Invalid holdout fold {self.holdout_fold}: it must be -1 (none) or 0..{self.folds - 1}."),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["synth_ablate"] = list(self.synth_ablate)
        d["train_npz"] = list(self.train_npz)
        d["tune"] = list(self.tune)
        return d

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "TrainConfig":
        """The config stored in a checkpoint (lists back to tuples; keys older versions lacked take
        their defaults), with ``overrides``."""
        d = {**d, **overrides}
        for name in ("milestones", "synth_ablate", "train_npz", "tune"):
            d[name] = tuple(d.get(name, ()))
        return cls(**d)
