"""Train the digit localiser (LocNet, ``model.locnet``) on rendered scenes (``train.scenes``).

    python -m train.localise [--scenes 30000] [--epochs 8] [--out checkpoints/localiser-run]
    python -m train.localise --resume checkpoints/localiser-run/last.pt

Targets follow CenterNet: a Gaussian peak at each digit's centre on the stride-4 grid (penalty-
reduced focal loss), and at the centre cell the offset within the cell and the log width and
height (L1). Digits cut by the frame or their plate's edge ("ignore" boxes of ``train.scenes``) are
negatives by default (``--cut-digits negative``: a person means a whole digit, and the cut neighbours
at the sides of an SVHN-style crop were what the main-digit choice most often took instead); with
``--cut-digits ignore`` (the first localisers' training) their cells carry no loss at all. Scenes
are rendered once and cached under ``--data-dir``. ``last.pt`` (with the optimiser) is written
every epoch, ``best.pt`` (weights and metadata) whenever the validation box accuracy improves;
both atomically, so Ctrl-C never leaves a broken file. Training scenes are augmented as they are
drawn (``augment``: zoomed out onto the letterbox grey or into a part of the scene, channels
shuffled, inverted, contrast and brightness changed), so that a few epochs over the cached scenes
do not learn them by heart, and a few of each batch are replaced by close-ups
(``train.scenes.closeup``): letters filling the frame as negatives, and as many single large digits
alone on a wall as positives, without which the letters teach that a large glyph alone is no digit;
with ``--svhn-crops``, also by small SVHN-style crops enlarged (``train.scenes.svhn_crop``), the
soft tight crops and low-resolution plates of real photos that the sharp scenes lack.
bf16 autocast is used where the CPU has it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from model.checkpoint import CheckpointError, load_checkpoint, make_checkpoint, save_checkpoint
from model.localiser import (HEAT, INPUT_SIZE, LOG_H, LOG_W, MEAN, OFFSET_X, OFFSET_Y, OUTPUTS, PAD_VALUE, STD,
                             STRIDE, Detection, Letterbox, decode, iou, main_detection, normalize_input)
from model.networks import ArchConfig, build_network
from model.reading import FIND_THRESHOLD
from train.light import UNIFORMS, poor_light
from train.scenes import RENDERER_VERSION, closeup, generate_scenes, letterboxed, noise_picture, split_visible, svhn_crop
from train.synth import find_fonts

log = logging.getLogger(__name__)

FOCAL_ALPHA, FOCAL_BETA = 2.0, 4.0     # CenterNet's focal-loss exponents
SIZE_WEIGHT = 1.0                      # L1 weight of the log sizes and offsets against the heat loss
IOU_GOOD = 0.5
CUT_DIGITS = ("negative", "ignore")    # what the localiser learns of a digit cut by the frame or its plate
ZOOM_P, ZOOM_RANGE = 0.5, (0.5, 1.6)    # how often a training scene is zoomed, and by how much (log-uniform)
INVERT_P, SHUFFLE_P, CONTRAST_P = 0.2, 0.5, 0.5


@dataclass(frozen=True)
class LocaliserConfig:
    """A localiser training run (built once from the command line)."""

    scenes: int = 30_000
    val_scenes: int = 1_000
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    depth: int = 1
    width: int = 24
    seed: int = 0                       # training seed, and the validation scenes' seed
    data_seeds: tuple[int, ...] = (0,)  # each renders ``scenes`` training scenes of its own
    init: str | None = None             # start from this localiser's weights (fine-tuning)
    workers: int = 2
    data_dir: str = "./data"
    out: str = "checkpoints/localiser-run"
    amp: bool = True
    cut_digits: str = "negative"        # digits cut by the frame: "negative" or "ignore" (CUT_DIGITS)
    augment: bool = True                # zoom and recolour training scenes as they are drawn
    letter_closeups: float = 0.05       # fraction of each batch replaced by digit-free letter close-ups
    digit_closeups: float = 0.05        # ... and by close-ups of one large digit alone (positives)
    svhn_crops: float = 0.35            # ... and by small SVHN-style crops, enlarged: tight or on a wall
    blurred_numbers: float = 0.3        # of those on a wall, the part on a wall of other numbers out of focus
    noise: float = 0.03                 # ... and by digit-free pictures of random pixels (negatives)
    poor_light: float = 0.0             # fraction of the augmented scenes taken in poor light (train.light)


# ----------------------------------------------------------------------------- data


def load_scenes(cfg: LocaliserConfig, split: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Rendered, letterboxed scenes of a split, cached as an .npz under ``data_dir``, named by the
    renderer's version too (a changed renderer never reads an older one's scenes)."""
    path = Path(cfg.data_dir) / "scenes" / f"{split}-{n}-seed{seed}-{INPUT_SIZE}-r{RENDERER_VERSION}.npz"
    if path.is_file():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    log.info("rendering %d %s scenes with %d workers", n, split, cfg.workers)
    data = generate_scenes(n, seed, split, INPUT_SIZE, cfg.workers)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several rendered sets as one, the box indices shifted to the joined scene numbers."""
    out, offset = {k: [] for k in parts[0]}, 0
    for part in parts:
        for key, value in part.items():
            out[key].append(value + offset if key.endswith("_index") else value)
        offset += len(part["x"])
    return {k: np.concatenate(v) for k, v in out.items()}


def augment(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray,
            rng: np.random.Generator, poor_light_p: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One letterboxed training scene (uint8 (S, S, 3), boxes in its pixels) zoomed and recoloured.

    Zoom (half the scenes, factor 0.5 to 1.6): below 1 the scene shrinks onto the letterbox grey at
    a random place (smaller digits); above 1 a random part of it fills the input (larger digits,
    some cut by the new edge, which become cut digits as in ``train.scenes``). Then, independently:
    channels shuffled, the picture inverted, contrast and brightness changed; with probability
    ``poor_light_p``, then taken in poor light (``train.light.poor_light``).
    """
    size = image.shape[0]
    if rng.random() < ZOOM_P:
        factor = float(np.exp(rng.uniform(*np.log(ZOOM_RANGE))))
        picture = Image.fromarray(image)
        if factor < 1:
            side = max(8, round(size * factor))
            left, top = (int(v) for v in rng.integers(0, size - side + 1, 2))
            canvas = Image.new("RGB", (size, size), PAD_VALUE)
            canvas.paste(picture.resize((side, side), Image.Resampling.BILINEAR), (left, top))
            image, scale, shift = np.asarray(canvas), side / size, np.array([left, top] * 2, np.float32)
        else:
            side = size / factor
            x0, y0 = (float(v) for v in rng.uniform(0, size - side, 2))
            image = np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR, box=(x0, y0, x0 + side, y0 + side)))
            scale, shift = factor, np.array([-x0, -y0] * 2, np.float32) * factor
        frame = (0.0, 0.0, float(size), float(size))
        boxes, cut = split_visible((boxes * scale + shift).astype(np.float32), frame)
        ignore = np.concatenate([cut, *split_visible((ignore * scale + shift).astype(np.float32), frame)])
    x = image.astype(np.float32)
    if rng.random() < SHUFFLE_P:
        x = x[..., rng.permutation(3)]
    if rng.random() < INVERT_P:
        x = 255.0 - x
    if rng.random() < CONTRAST_P:
        mean = x.mean()
        x = (x - mean) * float(rng.uniform(0.6, 1.4)) + mean + float(rng.uniform(-30, 30))
    if poor_light_p and rng.random() < poor_light_p:
        x = 255.0 * poor_light(np.clip(x, 0, 255) / 255.0, rng.random(UNIFORMS), rng.standard_normal(x.shape))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8), boxes, ignore


def training_batch(data: dict[str, np.ndarray], idx: np.ndarray, boxes: list[np.ndarray], ignore: list[np.ndarray],
                   cfg: "LocaliserConfig", rng: np.random.Generator, fonts) -> tuple[np.ndarray, list, list]:
    """The scenes ``idx`` as trained on: augmented (``cfg.augment``), some replaced by close-ups of
    letters (``cfg.letter_closeups``) or of one digit (``cfg.digit_closeups``), by SVHN-style
    crops (``cfg.svhn_crops``) or by pictures of random pixels (``cfg.noise``), all rendered as drawn."""
    images, bs, ign = [], [], []
    closeups = cfg.letter_closeups + cfg.digit_closeups
    drawn_with_fonts = closeups + cfg.svhn_crops if fonts else 0.0   # without fonts none of those is drawn
    for i in idx:
        draw = rng.random()
        if fonts and draw < closeups:
            image, b, g = letterboxed(closeup(rng, fonts, INPUT_SIZE, digit=draw >= cfg.letter_closeups), INPUT_SIZE)
        elif fonts and draw < closeups + cfg.svhn_crops:
            image, b, g = letterboxed(svhn_crop(rng, fonts, INPUT_SIZE, cfg.blurred_numbers), INPUT_SIZE)
        elif draw < drawn_with_fonts + cfg.noise:
            image, b, g = letterboxed(noise_picture(rng, INPUT_SIZE), INPUT_SIZE)
        elif cfg.augment:
            image, b, g = augment(data["x"][i], boxes[i], ignore[i], rng, cfg.poor_light)
        else:
            image, b, g = data["x"][i], boxes[i], ignore[i]
        images.append(image)
        bs.append(b)
        ign.append(g)
    return np.stack(images), bs, ign


def boxes_of(data: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    """Per scene, its boxes under ``key`` ("boxes" or "ignore")."""
    split = np.searchsorted(data[key + "_index"], np.arange(1, len(data["x"])))
    return np.split(data[key], split)


def targets(boxes: list[np.ndarray], ignore: list[np.ndarray], grid: int,
            cut_digits: str = "negative") -> dict[str, np.ndarray]:
    """CenterNet targets of a batch: heat (B, g, g), weight of negatives (B, g, g), and at each
    centre cell its index, offset (2) and log size (2). The cells of ``ignore`` boxes (cut digits)
    are negatives like the background, or carry no loss with ``cut_digits="ignore"``."""
    if cut_digits not in CUT_DIGITS:
        raise ValueError(f"Invalid cut_digits {cut_digits!r}. Only {', '.join(CUT_DIGITS)} are supported.")
    b = len(boxes)
    heat = np.zeros((b, grid, grid), np.float32)
    neg_weight = np.ones((b, grid, grid), np.float32)
    centres = (np.arange(grid, dtype=np.float32) + 0.5)
    cells, regress = [], []
    for i, (scene, cut) in enumerate(zip(boxes, ignore)):
        for x0, y0, x1, y1 in (cut / STRIDE if cut_digits == "ignore" else ()):
            neg_weight[i, max(0, int(y0)):int(np.ceil(y1)), max(0, int(x0)):int(np.ceil(x1))] = 0.0
        for x0, y0, x1, y1 in scene / STRIDE:
            cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 0.25), max(y1 - y0, 0.25)
            gx = np.exp(-((centres - cx) ** 2) / (2 * max(0.5, w / 6) ** 2))
            gy = np.exp(-((centres - cy) ** 2) / (2 * max(0.5, h / 6) ** 2))
            heat[i] = np.maximum(heat[i], gy[:, None] * gx[None, :])
            col, row = min(int(cx), grid - 1), min(int(cy), grid - 1)
            heat[i, row, col] = 1.0
            neg_weight[i, row, col] = 1.0
            cells.append((i, row, col))
            regress.append((cx - col - 0.5, cy - row - 0.5, np.log(w), np.log(h)))
    neg_weight = np.maximum(neg_weight, (heat > 0.1).astype(np.float32))
    return {"heat": heat, "neg_weight": neg_weight, "cells": np.asarray(cells, np.int64).reshape(-1, 3),
            "regress": np.asarray(regress, np.float32).reshape(-1, 4)}


def localiser_loss(out: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    """Penalty-reduced focal loss on the heat map plus L1 on offsets and log sizes at centres."""
    p = torch.sigmoid(out[:, HEAT].float()).clamp(1e-4, 1 - 1e-4)          # (B, g, g)
    pos = (t["heat"] == 1.0).float()
    pos_loss = -torch.log(p) * (1 - p) ** FOCAL_ALPHA * pos
    neg_loss = -torch.log(1 - p) * p ** FOCAL_ALPHA * (1 - t["heat"]) ** FOCAL_BETA * (1 - pos) * t["neg_weight"]
    n_pos = pos.sum().clamp(min=1.0)
    loss = (pos_loss.sum() + neg_loss.sum()) / n_pos
    if len(t["cells"]):
        i, r, c = t["cells"].unbind(1)
        pred = out[i, :, r, c][:, [OFFSET_X, OFFSET_Y, LOG_W, LOG_H]].float()   # (N, 4)
        loss = loss + SIZE_WEIGHT * torch.nn.functional.l1_loss(pred, t["regress"], reduction="sum") / n_pos
    return loss


# ----------------------------------------------------------------------------- evaluation


def main_digits(forward: Callable[[np.ndarray], np.ndarray], x: np.ndarray, threshold: float,
                batch_size: int = 128) -> list[Detection | None]:
    """The main digit found (None if none) in each letterboxed scene of ``x`` (uint8, input size),
    with ``forward``: float32 inputs -> maps (a torch network in eval mode or an ONNX model)."""
    frame = Letterbox(1.0, 0, 0)
    found = []
    for start in range(0, len(x), batch_size):
        for m in forward(normalize_input(x[start:start + batch_size])):
            found.append(main_detection(decode(m, frame, (INPUT_SIZE, INPUT_SIZE), threshold), (INPUT_SIZE, INPUT_SIZE)))
    return found


def torch_forward(net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """``net`` in eval mode as a numpy -> numpy forward, for ``main_digits``."""
    net.eval()

    @torch.inference_mode()
    def forward(x: np.ndarray) -> np.ndarray:
        return net(torch.from_numpy(x)).float().numpy()
    return forward


def evaluate(found: list[Detection | None], data: dict[str, np.ndarray]) -> dict:
    """Main-digit box accuracy (IoU >= 0.5 with the true main digit) on scenes with digits, and the
    fraction of digit-free scenes where something was found, given each scene's ``found`` main digit."""
    boxes = boxes_of(data, "boxes")
    hits, with_digits, false_alarms, empty = 0, 0, 0, 0
    for main_found, truth in zip(found, boxes):
        if len(truth) == 0:
            empty += 1
            false_alarms += main_found is not None
            continue
        with_digits += 1
        main = main_detection([Detection(tuple(map(float, b)), 1.0) for b in truth], (INPUT_SIZE, INPUT_SIZE))
        hits += main_found is not None and iou(main_found.box, main.box) >= IOU_GOOD
    return {"box_iou50": hits / max(with_digits, 1), "false_alarm": false_alarms / max(empty, 1),
            "scenes_with_digits": with_digits, "empty_scenes": empty}


# ----------------------------------------------------------------------------- training


def train_one_epoch(net, optimizer, scheduler, data, boxes, ignore, cfg: LocaliserConfig, epoch: int,
                    fonts=()) -> float:
    net.train()
    rng = np.random.default_rng([cfg.seed, epoch])
    order = rng.permutation(len(data["x"]))
    grid = INPUT_SIZE // STRIDE
    total, steps = 0.0, 0
    bar = tqdm(range(0, len(order) - cfg.batch_size + 1, cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}",
               unit="batch", dynamic_ncols=True)
    for start in bar:
        images, batch_boxes, batch_ignore = training_batch(data, order[start:start + cfg.batch_size], boxes, ignore,
                                                           cfg, rng, fonts)
        x = torch.from_numpy(normalize_input(images))
        t = {k: torch.from_numpy(v) for k, v in targets(batch_boxes, batch_ignore, grid, cfg.cut_digits).items()}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.amp):
            out = net(x)
        loss = localiser_loss(out, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total, steps = total + loss.item(), steps + 1
        if steps % 20 == 0:
            bar.set_postfix(loss=f"{total / steps:.3f}")
    return total / max(steps, 1)


def _checkpoint(net, cfg: LocaliserConfig, epoch: int, metrics: dict, state: dict | None = None) -> dict:
    arch = ArchConfig(arch="locnet", depth=cfg.depth, width=cfg.width, num_classes=len(OUTPUTS))
    seeds = ", ".join(map(str, cfg.data_seeds))
    dataset = (f"Scenes r{RENDERER_VERSION} (train/scenes.py): {cfg.scenes * len(cfg.data_seeds):,} rendered photos "
               f"of house numbers, walls and letters (render seeds {seeds}), boxes of every digit"
               + (", zoomed and recoloured as drawn" if cfg.augment else "")
               + (f", {cfg.poor_light:.0%} of those in poor light" if cfg.augment and cfg.poor_light else "")
               + (f", {cfg.letter_closeups:.0%} replaced by letter close-ups" if cfg.letter_closeups else "")
               + (f", {cfg.digit_closeups:.0%} by close-ups of one digit" if cfg.digit_closeups else "")
               + (f", {cfg.svhn_crops:.0%} by SVHN-style crops (tight or on a wall"
                  + (f", {cfg.blurred_numbers:.0%} of walls a mosaic of blurred house numbers" if cfg.blurred_numbers else "")
                  + ")" if cfg.svhn_crops else "")
               + (f", {cfg.noise:.0%} by pictures of random pixels" if cfg.noise else "")
               + f"; cut digits {'negatives' if cfg.cut_digits == 'negative' else 'ignored'}"
               + (f"; fine-tuned from {Path(cfg.init).name}" if cfg.init else ""))
    return make_checkpoint(arch, net.state_dict(), dataset=dataset, class_names=list(OUTPUTS),
                           input_size=(INPUT_SIZE, INPUT_SIZE), mean=MEAN, std=STD, metrics=metrics,
                           train_config=asdict(cfg), epoch=epoch, training_state=state)


def load_init(net: torch.nn.Module, arch: ArchConfig, path: str) -> None:
    """Start ``net`` (the LocNet ``arch`` builds) from the weights of the localiser at ``path``.

    A shallower LocNet of the same width grows into a deeper one, as Net2DeeperNet does (Chen et al.,
    "Net2Net", 2016): each stage's added blocks start with their last convolution zero, so that they
    pass their input through unchanged and the grown network computes exactly what the shallower
    one did; training then gives them something to do.

    Raises:
        CheckpointError: naming both, if the widths differ or the checkpoint is deeper than ``net``.
    """
    ckpt = load_checkpoint(path)
    held = ArchConfig.from_dict(ckpt["arch"])
    if held.arch != "locnet" or held.width != arch.width or held.depth > arch.depth:
        raise CheckpointError(f"--init {path} is {held.arch} depth {held.depth} width {held.width}; this run is "
                              f"locnet depth {arch.depth} width {arch.width}: the width must be the same and the "
                              f"depth at most this run's.")
    net.load_state_dict(ckpt["state_dict"], strict=held.depth == arch.depth)   # growing: the added blocks are missing
    with torch.no_grad():
        for stage in net.stages:
            for block in stage[1 + held.depth:]:
                block.conv2.weight.zero_()


def train(cfg: LocaliserConfig, resume: str | None = None) -> Path:
    """Run (or resume) a localiser training; returns the path of ``best.pt``."""
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    arch = ArchConfig(arch="locnet", depth=cfg.depth, width=cfg.width, num_classes=len(OUTPUTS))
    net = build_network(arch)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.init:
        load_init(net, arch, cfg.init)
    train_data = concatenate([load_scenes(cfg, "train", cfg.scenes, seed) for seed in cfg.data_seeds])
    val_data = load_scenes(cfg, "val", cfg.val_scenes, cfg.seed)
    steps_per_epoch = len(train_data["x"]) // cfg.batch_size
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                    pct_start=0.15)
    start_epoch, best = 0, -1.0
    if resume:
        ckpt = load_checkpoint(resume)
        net.load_state_dict(ckpt["state_dict"])
        state = ckpt["training_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(ckpt["epoch"]), float(state["best"])
    boxes, ignore = boxes_of(train_data, "boxes"), boxes_of(train_data, "ignore")
    fonts = tuple(find_fonts()) if cfg.letter_closeups + cfg.digit_closeups + cfg.svhn_crops > 0 else ()
    for epoch in range(start_epoch, cfg.epochs):
        began = time.perf_counter()
        loss = train_one_epoch(net, optimizer, scheduler, train_data, boxes, ignore, cfg, epoch, fonts=fonts)
        scores = evaluate(main_digits(torch_forward(net), val_data["x"], FIND_THRESHOLD), val_data)
        log.info("epoch %d: loss %.4f, val main-box IoU>=0.5 %.4f, false alarms on empty scenes %.4f, %.0f s",
                 epoch + 1, loss, scores["box_iou50"], scores["false_alarm"], time.perf_counter() - began)
        data_note = (f"{cfg.val_scenes:,} rendered validation scenes (seed {cfg.seed}, renderer r{RENDERER_VERSION}, "
                     f"disjoint from train)")
        metrics = {"val_box_iou50": {"value": scores["box_iou50"], "data": data_note},
                   "val_false_alarm": {"value": scores["false_alarm"], "data": data_note + ", digit-free ones"}}
        if scores["box_iou50"] > best:
            best = scores["box_iou50"]
            save_checkpoint(_checkpoint(net, cfg, epoch + 1, metrics), out / "best.pt")
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "best": best}
        save_checkpoint(_checkpoint(net, cfg, epoch + 1, metrics, state), out / "last.pt")
    return out / "best.pt"


def fraction(text: str) -> float:
    """An argparse type: a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction from 0 to 1")
    return value


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train the digit localiser on rendered scenes.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = LocaliserConfig()
    p.add_argument("--scenes", type=int, default=defaults.scenes, help="training scenes to render")
    p.add_argument("--val-scenes", type=int, default=defaults.val_scenes, help="validation scenes")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--lr", type=float, default=defaults.lr, help="peak AdamW learning rate (one-cycle)")
    p.add_argument("--width", type=int, default=defaults.width, help="channels of LocNet's first stage")
    p.add_argument("--depth", type=int, default=defaults.depth, help="extra blocks per stage (1 or 2)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="training seed; also the validation scenes'")
    p.add_argument("--data-seeds", type=int, nargs="+", default=list(defaults.data_seeds),
                   help="render seeds: each adds --scenes training scenes")
    p.add_argument("--init", default=None, metavar="CKPT",
                   help="start from this localiser's weights (of the same width; a shallower one grows to --depth)")
    p.add_argument("--workers", type=int, default=defaults.workers, help="processes rendering scenes")
    p.add_argument("--data-dir", default=defaults.data_dir, help="where rendered scenes are cached")
    p.add_argument("--out", default=defaults.out, help="run folder (last.pt, best.pt)")
    p.add_argument("--cut-digits", choices=CUT_DIGITS, default=defaults.cut_digits,
                   help="digits cut by the frame or their plate's edge: negatives, or no loss")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="train on the cached scenes as rendered (no zoom or recolouring)")
    p.add_argument("--letter-closeups", type=fraction, default=defaults.letter_closeups,
                   help="fraction of each batch replaced by digit-free close-ups of letters")
    p.add_argument("--digit-closeups", type=fraction, default=defaults.digit_closeups,
                   help="fraction of each batch replaced by close-ups of one large digit alone")
    p.add_argument("--svhn-crops", type=fraction, default=defaults.svhn_crops,
                   help="fraction of each batch replaced by small SVHN-style crops of house numbers, enlarged: "
                        "the whole picture (square or tall) or laid on a wall")
    p.add_argument("--blurred-numbers", type=fraction, default=defaults.blurred_numbers,
                   help="of the SVHN-style crops laid on a wall, the fraction whose wall is a mosaic of other "
                        "house numbers out of focus")
    p.add_argument("--noise", type=fraction, default=defaults.noise,
                   help="fraction of each batch replaced by digit-free pictures of random pixels")
    p.add_argument("--poor-light", type=fraction, default=defaults.poor_light,
                   help="fraction of the augmented training scenes dimmed, lit unevenly, colour-cast and noisy")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 instead of bf16 autocast")
    p.add_argument("--resume", default=None, metavar="LAST_PT", help="continue the run saved in LAST_PT")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    resume = args.resume
    values = {k: v for k, v in vars(args).items() if k != "resume"}
    if resume:
        values = load_checkpoint(resume)["train_config"]
        values.setdefault("cut_digits", "ignore")     # runs made before the option ignored cut digits
        values.setdefault("augment", False)           # ... and trained on the scenes as rendered
        values.setdefault("letter_closeups", 0.0)
        values.setdefault("digit_closeups", 0.0)
        values.setdefault("svhn_crops", 0.0)
        values.setdefault("blurred_numbers", 0.0)
        values.setdefault("noise", 0.0)
        values.setdefault("poor_light", 0.0)
        if args.epochs not in (values["epochs"], LocaliserConfig.epochs):
            print(f"error: --resume continues the stored one-cycle schedule of {values['epochs']} epochs; to train "
                  f"longer start a new run from its weights: --init {resume} --epochs {args.epochs}", file=sys.stderr)
            return 2
    values["data_seeds"] = tuple(values.get("data_seeds", (0,)))
    cfg = LocaliserConfig(**values)
    try:
        best = train(cfg, resume)
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: python -m train.localise --resume {Path(cfg.out) / 'last.pt'}",
              file=sys.stderr)
        return 130
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
