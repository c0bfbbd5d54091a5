"""The pieces of a training epoch: device and process group, data pipeline, one epoch, evaluation."""
from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2 as T
from tqdm import tqdm

from model.preprocess import preprocess

log = logging.getLogger(__name__)

PROGRESS_EVERY = 20  # steps between progress-bar refreshes (each one waits for the device)


@dataclass(frozen=True)
class Runtime:
    """Where this process computes: device, precision, and its place in a distributed run."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None for full fp32
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last: faster convolutions on CUDA and, measured here, on CPU (oneDNN)."""
        return torch.channels_last if self.device.type in ("cuda", "cpu") else torch.contiguous_format


def pick_device(name: str = "auto") -> torch.device:
    """"auto" picks CUDA, then MPS, then CPU; otherwise the named device.

    Raises:
        ValueError: for a device that is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"Invalid --device {name!r}. Use auto, cpu, cuda, cuda:N or mps.") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Invalid --device {name!r}: CUDA is not available on this machine.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"Invalid --device {name!r}: MPS is not available on this machine.")
    return device


def setup_runtime(device_name: str, amp: bool) -> Runtime:
    """Pick the device, join the process group when started by torchrun, choose the precision."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = pick_device(device_name)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    amp_dtype = None
    if amp and device.type == "cuda":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cudnn.benchmark = True
    elif amp and device.type == "cpu" and cpu_has_bf16():
        amp_dtype = torch.bfloat16  # here 1.8 to 2.3x the fp32 training speed of WRN-16s (README, Benchmarks)
    return Runtime(device, amp_dtype, rank, world)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX-512 BF16 or AMX, through oneDNN).

    Without it, CPU autocast to bf16 still runs but emulates the arithmetic and is slower than fp32,
    so training stays in fp32 there.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or a non-oneDNN build
        return False


# For the few real photos added to a run (--train-npz): a digit stays a digit under a small affine
# change, other colours and contrast, swapped channels and inverted polarity (SVHN plates come both
# light-on-dark and dark-on-light), so each real crop stands for many.
PHOTO_AUGMENT = T.Compose([
    T.RandomAffine(degrees=8, translate=(0.08, 0.08), scale=(0.9, 1.1), shear=8),
    T.ColorJitter(brightness=0.3, contrast=0.4, saturation=0.4, hue=0.05),
    T.RandomChannelPermutation(),
    T.RandomInvert(p=0.2),
])


class ImageTransform:
    """PIL image -> normalised tensor, through the shared ``preprocess``; optional augmentation.

    Augmentation follows the WRN paper for CIFAR: 4-pixel reflection padding, random crop, flip.
    Cutout (DeVries & Taylor 2017) zeroes one random square of the normalised image.
    """

    def __init__(self, size, mean, std, augment: bool = False, cutout: int = 0, photo: bool = False):
        self.size, self.mean, self.std, self.cutout = tuple(size), tuple(mean), tuple(std), cutout
        self.augment = T.Compose([T.RandomCrop(self.size, padding=4, padding_mode="reflect"),
                                  T.RandomHorizontalFlip()]) if augment else None
        if photo:
            self.augment = PHOTO_AUGMENT

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.augment is not None:
            image = self.augment(image)
        x = torch.from_numpy(preprocess(image, self.size, self.mean, self.std)[0])  # (3, H, W)
        if self.cutout:
            h, w = x.shape[1:]
            cy, cx = torch.randint(h, ()).item(), torch.randint(w, ()).item()
            r = self.cutout // 2
            x[:, max(0, cy - r):cy + self.cutout - r, max(0, cx - r):cx + self.cutout - r] = 0
        return x


class Transformed(Dataset):
    """Apply an image transform to a dataset of (PIL image, label)."""

    def __init__(self, base: Dataset, transform: ImageTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[i]
        return self.transform(image), label


class EpochSampler(Sampler):
    """A permutation fixed by (seed, epoch), sharded over ranks, that can start part-way through.

    Starting part-way is what lets an interrupted epoch resume where it stopped.
    """

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        perm += perm[: (-len(perm)) % self.world_size]  # equal shards, as DistributedSampler does
        return perm[self.rank::self.world_size]

    def __iter__(self):
        return iter(self._indices()[self.skip:])

    def __len__(self) -> int:
        return -(-self.n // self.world_size) - self.skip


class MixedEpochSampler(EpochSampler):
    """Batches in which ``weight`` of the images come from a second, small data set.

    The indices address ``ConcatDataset([base, extra])``. An epoch keeps the step count of the base
    data alone (len(base) // batch_size full batches), so a run with and without the extra images
    takes the same number of steps; each batch takes ``round(weight * batch_size)`` (at least one)
    images from a stream of fresh permutations of ``extra`` and the rest from a permutation of
    ``base``. Ranks take alternate batches. Fixed by (seed, epoch), and it can start part-way.
    """

    def __init__(self, n_base: int, n_extra: int, weight: float, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        super().__init__(n_base, seed, rank, world_size)
        self.n_extra, self.batch_size = n_extra, batch_size
        self.per_batch = min(batch_size - 1, max(1, round(weight * batch_size)))
        self.batches = max(1, n_base // batch_size)

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        k, n_batches = self.per_batch, self.batches
        base = torch.randperm(self.n, generator=g)
        base = base.repeat(-(-(n_batches * (self.batch_size - k)) // self.n))  # tiny base: wrap around
        extra = torch.cat([torch.randperm(self.n_extra, generator=g)
                           for _ in range(-(-(n_batches * k) // self.n_extra))]) + self.n
        out: list[int] = []
        for b in range(self.rank, n_batches - (n_batches % self.world_size), self.world_size):
            out += base[b * (self.batch_size - k):(b + 1) * (self.batch_size - k)].tolist()
            out += extra[b * k:(b + 1) * k].tolist()
        return out

    def __len__(self) -> int:
        return (self.batches // self.world_size) * self.batch_size - self.skip


def make_loader(data: Dataset, batch_size: int, workers: int, rt: Runtime, sampler: Sampler | None = None,
                drop_last: bool = False) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                      pin_memory=rt.device.type == "cuda", drop_last=drop_last,
                      persistent_workers=False)


def autocast(rt: Runtime):
    return torch.autocast(rt.device.type, dtype=rt.amp_dtype) if rt.amp_dtype else nullcontext()


def to_device(x: torch.Tensor, y: torch.Tensor, rt: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    return (x.to(rt.device, non_blocking=True, memory_format=rt.memory_format),
            y.to(rt.device, non_blocking=True))


def train_one_epoch(net: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, rt: Runtime, mixup: float = 0.0,
                    desc: str = "", on_batch=None) -> dict:
    """One pass over ``loader``. Returns loss, accuracy (on the un-mixed labels), images seen (all ranks) and images/s.

    ``on_batch(i)`` is called after each optimiser step (the loop uses it to track its position).
    """
    net.train()
    dtype = torch.float32 if rt.device.type == "mps" else torch.float64  # MPS has no float64
    sums = torch.zeros(2, dtype=dtype, device=rt.device)  # loss sum, correct
    count = 0  # known on the host: copying it to the device every step would wait for the GPU
    start = time.perf_counter()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not rt.is_main, leave=False, dynamic_ncols=True)
    for i, (x, y) in enumerate(bar):
        x, y = to_device(x, y, rt)
        lam, perm = 1.0, None
        if mixup > 0:  # Zhang et al. 2018: train on convex combinations of pairs
            lam = float(torch.distributions.Beta(mixup, mixup).sample())
            perm = torch.randperm(x.size(0), device=x.device)
            x = lam * x + (1 - lam) * x[perm]
        with autocast(rt):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            if perm is not None:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, y[perm])
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        # Accumulated on the device: reading a value back every step would stall the GPU queue.
        n = y.size(0)
        sums += torch.stack([loss.detach().to(dtype) * n, (logits.argmax(1) == y).sum().to(dtype)])
        count += n
        if on_batch is not None:
            on_batch(i)
        if i % PROGRESS_EVERY == 0 and not bar.disable:
            loss_sum, correct = sums.tolist()
            rate = count / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}",
                            img_s=f"{rate * rt.world_size:.0f}")
    totals = torch.cat([sums, sums.new_tensor([count])])
    if rt.distributed:
        dist.all_reduce(totals)
    loss_sum, correct, count = totals.tolist()  # waits for the last step
    elapsed = time.perf_counter() - start
    count = max(count, 1.0)
    return {"train_loss": loss_sum / count, "train_accuracy": correct / count,
            "train_images": int(count), "images_per_s": count / max(elapsed, 1e-9)}


@torch.inference_mode()
def confusion_matrix(net: nn.Module, loader: DataLoader, num_classes: int, rt: Runtime) -> tuple[np.ndarray, float]:
    """Confusion matrix (rows = true class, columns = prediction) and mean cross-entropy."""
    net.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum, count = 0.0, 0
    for x, y in loader:
        x, y = to_device(x, y, rt)
        with autocast(rt):
            logits = net(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        count += y.size(0)
        idx = (y * num_classes + logits.argmax(1)).cpu()
        cm += torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes)
    return cm.numpy(), loss_sum / max(count, 1)


def evaluate(net: nn.Module, loader: DataLoader, num_classes: int, rt: Runtime) -> tuple[float, float]:
    """Accuracy and mean loss of ``net`` on ``loader``."""
    cm, loss = confusion_matrix(net, loader, num_classes, rt)
    return float(np.trace(cm) / max(cm.sum(), 1)), loss
