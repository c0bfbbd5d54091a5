"""Dataset registry: each data set says how to load its splits and what recipe trains it.

A data set is registered once with ``register`` and then found by any of its names
(case-insensitive, punctuation ignored: "CIFAR-10", "cifar10"). The training loop only sees the
``DatasetSpec`` and plain ``torch.utils.data.Dataset`` objects yielding (PIL image, label), so a
new data set needs no change to the loop.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset
from torchvision import datasets as tv

from train import synth

log = logging.getLogger(__name__)

SVHN_MEAN, SVHN_STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
DIGITS = tuple(str(d) for d in range(10))


class DataError(Exception):
    """A data set cannot be loaded; the message says what to do."""


@dataclass(frozen=True)
class Recipe:
    """Per-dataset training defaults (the paper's recipe where the paper has one)."""

    epochs: int
    lr: float
    milestones: tuple[int, ...]
    gamma: float
    dropout: float
    augment: bool  # pad-4 random crop and horizontal flip
    depth: int = 16
    width: int = 8
    val_size: int = 5000


@dataclass(frozen=True)
class DataRequest:
    """What the loop asks a loader for."""

    root: Path
    extra: bool = False              # SVHN: add the 531,131-image extra split
    synth_size: int = 100_000        # SynthDigits: training images to render
    mix_synthetic: float = 0.0       # real data sets: synthetic images added, as a fraction of the real ones
    seed: int = 0
    workers: int = 1
    synth_ablate: tuple[str, ...] = ()  # SynthDigits: generator parts switched off (ablation studies)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set.

    Attributes:
        name: display name.
        class_names: index = label.
        mean, std: per-channel normalisation of [0, 1] pixels.
        recipe: training defaults.
        load: ``load(request) -> (train, test)``, datasets yielding (PIL RGB image, int label).
        load_test: ``load_test(request) -> test``, the test split alone: evaluation reads (or, for
            SynthDigits, renders) nothing else, and needs only the test files.
        describe: ``describe(request, n_train) -> str``, a sentence saying what the model trains on.
    """

    name: str
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    recipe: Recipe
    load: Callable[[DataRequest], tuple[Dataset, Dataset]]
    load_test: Callable[[DataRequest], Dataset]
    aliases: tuple[str, ...] = ()
    input_size: tuple[int, int] = (32, 32)
    test_name: str = "test split"
    describe: Callable[[DataRequest, int], str] = field(default=lambda r, n: "")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_REGISTRY: dict[str, DatasetSpec] = {}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry under its name and aliases."""
    for n in (spec.name, *spec.aliases):
        _REGISTRY[_key(n)] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """Look up a data set by name (case-insensitive).

    Raises:
        ValueError: naming the value and the supported set.
    """
    spec = _REGISTRY.get(_key(name))
    if spec is None:
        names = sorted({s.name for s in _REGISTRY.values()})
        raise ValueError(f"Invalid dataset {name!r}. Only {', '.join(names)} are supported.")
    return spec


def dataset_names() -> list[str]:
    return sorted({s.name for s in _REGISTRY.values()})


class ArrayDataset(Dataset):
    """(N, H, W, 3) uint8 images and (N,) labels as a dataset of (PIL image, label)."""

    def __init__(self, images: np.ndarray, labels, classes: list[str] | None = None):
        assert len(images) == len(labels), "images and labels differ in length"
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.classes = classes  # class names read from the files, where the format has them

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[i]), int(self.labels[i])


def _offline_error(name: str, folder: Path, files: list[str], url: str, err: Exception) -> DataError:
    return DataError(
        f"{name} is not in {folder} and could not be downloaded ({type(err).__name__}: {err}). "
        f"Either run once on a machine with internet access so that it downloads itself, or download "
        f"{', '.join(files)} from {url} and put them in {folder}/, then run the same command again.")


def _ensure(files_present: bool, download: Callable[[], object], name: str, folder: Path,
            files: list[str], url: str) -> None:
    """Download a data set with torchvision (which verifies its checksums) unless already present."""
    if files_present:
        return
    log.info("%s not found in %s: downloading from %s", name, folder, url)
    try:
        download()
    except Exception as e:  # URLError, HTTPError, socket errors, checksum RuntimeError...
        raise _offline_error(name, folder, files, url, e) from e


class _SVHN(tv.SVHN):
    """torchvision's SVHN reading files already in place (checksums were checked on download)."""

    def _check_integrity(self) -> bool:
        return os.path.isfile(os.path.join(self.root, self.filename))


SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"


def _svhn_splits(req: DataRequest, splits: list[str]) -> list[ArrayDataset]:
    """Read SVHN splits from root/svhn, downloading the missing files first."""
    folder = req.root / "svhn"
    files = [f"{s}_32x32.mat" for s in splits]
    for split, f in zip(splits, files):
        _ensure((folder / f).is_file(), lambda: tv.SVHN(str(folder), split=split, download=True),
                "SVHN", folder, files, SVHN_URL)
    parts = [_SVHN(str(folder), split=s) for s in splits]
    return [ArrayDataset(p.data.transpose(0, 2, 3, 1), p.labels) for p in parts]  # CHW -> HWC


def load_svhn(req: DataRequest) -> tuple[Dataset, Dataset]:
    *train_parts, test = _svhn_splits(req, ["train", *(["extra"] if req.extra else []), "test"])
    train = ConcatDataset(train_parts) if len(train_parts) > 1 else train_parts[0]
    return _with_synthetic(train, req), test


def load_svhn_test(req: DataRequest) -> Dataset:
    return _svhn_splits(req, ["test"])[0]


def _with_synthetic(train: Dataset, req: DataRequest) -> Dataset:
    """Add ``mix_synthetic`` x len(train) SynthDigits images to a real training set."""
    if req.mix_synthetic <= 0:
        return train
    n = int(round(req.mix_synthetic * len(train)))
    x, y = synth.load_or_generate(req.root, n, req.seed, "train", req.workers)
    return ConcatDataset([train, ArrayDataset(x, y)])


def _cifar_loaders(cls: type, name: str, url: str) -> tuple[Callable[[DataRequest], tuple[Dataset, Dataset]],
                                                             Callable[[DataRequest], Dataset]]:
    """``(load, load_test)`` for torchvision's CIFAR class ``cls``."""
    class Trusting(cls):
        """torchvision's CIFAR reading files already in place (checksums were checked on download)."""

        def _check_integrity(self) -> bool:
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f))
                       for f, _ in (self.train_list if self.train else self.test_list))

        def _load_meta(self) -> None:
            import pickle
            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]

    def split(req: DataRequest, train: bool) -> ArrayDataset:
        folder = req.root / cls.base_folder
        files = [f for f, _ in (cls.train_list if train else cls.test_list)] + [cls.meta["filename"]]
        _ensure(all((folder / f).is_file() for f in files),
                lambda: cls(str(req.root), train=True, download=True), name, folder, [cls.filename], url)
        part = Trusting(str(req.root), train=train)
        return ArrayDataset(part.data, part.targets, part.classes)

    def load_test(req: DataRequest) -> Dataset:
        return split(req, train=False)

    def load(req: DataRequest) -> tuple[Dataset, Dataset]:
        return split(req, train=True), load_test(req)

    return load, load_test


def load_synth_test(req: DataRequest) -> Dataset:
    n_test = max(1000, min(10_000, req.synth_size // 5))
    return ArrayDataset(*synth.load_or_generate(req.root, n_test, req.seed, "test", req.workers, req.synth_ablate))


def load_synth(req: DataRequest) -> tuple[Dataset, Dataset]:
    x, y = synth.load_or_generate(req.root, req.synth_size, req.seed, "train", req.workers, req.synth_ablate)
    return ArrayDataset(x, y), load_synth_test(req)


SVHN_RECIPE = Recipe(epochs=160, lr=0.01, milestones=(80, 120), gamma=0.1, dropout=0.4, augment=False,
                     depth=16, width=8)
CIFAR_RECIPE = Recipe(epochs=200, lr=0.1, milestones=(60, 120, 160), gamma=0.2, dropout=0.3, augment=True,
                      depth=28, width=10)

register(DatasetSpec(
    "SVHN", DIGITS, SVHN_MEAN, SVHN_STD, SVHN_RECIPE, load_svhn, load_svhn_test, test_name="SVHN test split",
    describe=lambda r, n: (f"SVHN train{' + extra' if r.extra else ''}"
                           f"{f' + {r.mix_synthetic:g}x SynthDigits' if r.mix_synthetic else ''}, {n:,} images")))
register(DatasetSpec(
    "CIFAR-10", ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    CIFAR10_MEAN, CIFAR10_STD, CIFAR_RECIPE,
    *_cifar_loaders(tv.CIFAR10, "CIFAR-10", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    aliases=("cifar10", "c10"), test_name="CIFAR-10 test split",
    describe=lambda r, n: f"CIFAR-10 train, {n:,} images"))
register(DatasetSpec(
    "CIFAR-100", tuple(f"class{i}" for i in range(100)), CIFAR100_MEAN, CIFAR100_STD, CIFAR_RECIPE,
    *_cifar_loaders(tv.CIFAR100, "CIFAR-100", "https://www.cs.toronto.edu/~kriz/cifar.html"),
    aliases=("cifar100", "c100"), test_name="CIFAR-100 test split",
    describe=lambda r, n: f"CIFAR-100 train, {n:,} images"))


def _describe_synth(req: DataRequest, n: int) -> str:
    """What a SynthDigits model trains on: generator version, seed, ablations, image count."""
    ablated = "".join(f", no {a}" for a in req.synth_ablate)
    return (f"SynthDigits v{synth.GENERATOR_VERSION} (rendered street-style digits, seed {req.seed}{ablated}), "
            f"{n:,} images")


register(DatasetSpec(
    "SynthDigits", DIGITS, SVHN_MEAN, SVHN_STD,
    Recipe(epochs=30, lr=0.05, milestones=(15, 23), gamma=0.1, dropout=0.3, augment=False, depth=16, width=4),
    load_synth, load_synth_test, aliases=("synth", "synthetic"),
    test_name=f"SynthDigits v{synth.GENERATOR_VERSION} test split (rendered, disjoint from train)",
    describe=_describe_synth))


def load_npz(path: str | Path, num_classes: int | None = None) -> ArrayDataset:
    """A labelled image set stored as .npz: ``x`` uint8 (N, H, W, 3) and ``y`` integer (N,).

    Args:
        path: the file.
        num_classes: if given, every label must lie in [0, num_classes).

    Raises:
        DataError: one line naming the file, if it is missing or its arrays are not as above.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    try:
        with np.load(path) as f:
            if "x" not in f or "y" not in f:
                raise DataError(f"{path}: expected arrays 'x' (N, H, W, 3) uint8 and 'y' (N,), "
                                f"found {', '.join(f.files) or 'none'}.")
            x, y = f["x"], f["y"]
    except (OSError, ValueError) as e:  # not a zip, truncated, pickled objects
        raise DataError(f"{path}: not a readable .npz file ({e}).") from None
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: 'x' must be uint8 (N, H, W, 3) and 'y' (N,); got {x.dtype} {x.shape} and {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'y' must hold integer labels; got {y.dtype}.")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: labels must lie in 0..{num_classes - 1}; found {y.min()} to {y.max()}.")
    return ArrayDataset(x, y)


def stratified_folds(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every image: each class shuffled with ``seed`` and dealt round-robin.

    Folds are disjoint, cover every image, and hold each class in sizes that differ by at most one;
    the dealing continues from class to class, so fold sizes differ by at most one as well.
    """
    if k < 2:
        raise ValueError(f"Invalid --folds {k}: it must be >= 2.")
    labels = np.asarray(labels)
    fold = np.empty(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    start = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (start + np.arange(len(members))) % k
        start += len(members)
    return fold


def load_train_npz(paths: tuple[str, ...], num_classes: int, folds: int = 0, holdout: int = -1,
                   seed: int = 0) -> ArrayDataset:
    """Labelled images from ``.npz`` files for training, concatenated; optionally without one fold.

    Args:
        paths: the files (each as ``load_npz`` reads it; all the same image size).
        folds, holdout, seed: with ``holdout >= 0``, leave out fold ``holdout`` of the first
            file's ``stratified_folds(labels, folds, seed)`` (cross-validation).
    """
    parts = [load_npz(p, num_classes) for p in paths]
    if holdout >= 0:  # cross-validation holds out a fold of the first file (the one validated on)
        keep = stratified_folds(parts[0].labels, folds, seed) != holdout
        parts[0] = ArrayDataset(parts[0].images[keep], parts[0].labels[keep])
    sizes = {p.images.shape[1:3] for p in parts}
    if len(sizes) > 1:
        raise DataError(f"{', '.join(map(str, paths))}: images of different sizes {sorted(sizes)}; give files of one size.")
    if not sum(len(p) for p in parts):
        raise DataError(f"{', '.join(map(str, paths))}: no images to train on.")
    return ArrayDataset(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]))
