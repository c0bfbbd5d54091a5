"""The photo suite: real SVHN digits turned into the pictures people upload, read five ways.

Each of the 541 real crops of ``--npz`` becomes, with its own seeded generator, one picture per
variant: enlarged as a tight square photo; cut as a tight tall box (aspect 1.3 to 2.2) around the
central digit and enlarged; enlarged 2-4x and placed anywhere in a 3-6x larger portrait or
landscape frame over a plain wall, a textured wall (brick, siding, plaster), a rendered street
scene with letters, or other real crops blurred; the same frame rotated by 2-6 degrees; the plain
wall frame enlarged to a 12-megapixel phone photo (4032 px on its longer side); the plain wall frame
badly lit (underexposed, uneven, a warm cast, sensor noise). Every picture is
saved as a JPEG (quality 80-95) and decoded again as an upload is (the phone photo at half scale). Each picture is read
by the serving pipeline (``model.reading``, ONNX Runtime) five ways: today's centred crop (one
view of the centred square), views only (no localiser: the square around the whole picture,
zoomed and shifted), the localiser with one view, and the localiser with all views (probabilities
averaged, the shipped rule; and the most confident view, for comparison). A refused
picture ("no digit") counts as wrong, and the refusals are reported too. The reference is the
classifier on the original 32x32 crops; the same crops uploaded as they are (read by the served
pipeline, views when unsure) are printed beside it.

Box accuracy is measured on rendered scenes (``train.scenes``, test split, which the localiser never
trained on): the fraction where the main box found has IoU >= 0.5 with the true main digit. Digit-
free pictures (rendered walls with letters, also in poor light, blank, noise, a large letter)
measure false finds.

    python bench/photo_suite.py [--checkpoint checkpoints/default.pt] [--localiser checkpoints/localiser.pt]
                                [--npz ../shared/data/svhn/svhn_real_val.npz] [--picture docs/reading.png]
                                [--save run.json] [--against earlier.json] [--draw N]

Two runs differ mostly in a few pictures read differently, so ``--save`` keeps every picture's
outcome (the served way), and ``--against`` an earlier run's file prints, for each variant, the box
scenes and each digit-free kind, how many pictures were gained and lost with one standard error of
the difference (McNemar's: the square root of gained plus lost). ``--draw N`` draws other pictures
of the same kinds (other seeds for the frames, the scenes and the digit-free pictures), to confirm
on pictures never looked at what one draw suggested; ``--against`` refuses another draw's file.

A classifier that trained on the --npz images (a fine-tune with ``--train-npz``) must read each of
them with a model that never saw it: ``--crossval DIR`` names the folder of its cross-validation
(``python main.py ... --cross-validate NPZ --out DIR``), and each real image is then read by the
model of the fold that held it out. The suite refuses to score such a classifier without it.
Rendered scenes and digit-free pictures are read with ``--checkpoint`` itself.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from app.modelfile import ensure_onnx  # noqa: E402
from model.localiser import Detection, iou, main_detection  # noqa: E402
from model.inference import Predictor, load_predictor  # noqa: E402
from model.preprocess import decode_picture  # noqa: E402
from model.reading import FAINT, NOTHING_FOUND, VIEWS, Reader  # noqa: E402
from train.crossval import fold_models, trained_on  # noqa: E402
from train.light import light_ramp  # noqa: E402
from train.scenes import SCENE_SPLIT_IDS, _draw_clutter, _draw_letters, _wall, render_scene  # noqa: E402
from train.synth import find_fonts  # noqa: E402

WAYS = ("centred crop", "views only", "localiser", "localiser + views", "loc + views, max")
SERVED = "localiser + views"   # the way the server reads


def _jpeg(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The picture saved as a JPEG and decoded as the server decodes an upload (a large one at a
    reduced scale, ``model.preprocess.decode_picture``)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(80, 96)))
    return decode_picture(Image.open(io.BytesIO(buffer.getvalue()))).picture


def _enlarge(crop: np.ndarray, factor: float) -> np.ndarray:
    side = round(32 * factor)
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.Resampling.BICUBIC))


def tight_square(crop, rng, others, fonts):
    return _enlarge(crop, float(rng.uniform(3, 8)))


def tall_box(crop, rng, others, fonts):
    """A box taller than wide around the central digit (SVHN centres it and fills the height)."""
    aspect = float(rng.uniform(1.3, 2.2))
    width = 32 / aspect
    left = (32 - width) / 2
    box = Image.fromarray(crop).crop((round(left), 0, round(left + width), 32))
    height = int(rng.integers(128, 321))
    return np.asarray(box.resize((max(1, round(box.width * height / 32)), height), Image.Resampling.BICUBIC))


def _background(kind: str, rng, h: int, w: int, others: np.ndarray, fonts) -> np.ndarray:
    if kind == "plain wall":
        wall = np.empty((h, w, 3), np.float32)
        wall[:] = rng.uniform(0.2, 0.95, 3)
        return np.clip(wall * 255, 0, 255).astype(np.uint8)
    if kind == "textured wall":
        return np.clip(_draw_clutter(rng, _wall(rng, h, w)) * 255, 0, 255).astype(np.uint8)
    if kind == "street scene":
        img = _draw_letters(rng, _draw_clutter(rng, _wall(rng, h, w)), fonts)
        return np.clip(img * 255, 0, 255).astype(np.uint8)
    # other real crops, enlarged and blurred, tiled
    tile = int(rng.integers(64, 160))
    canvas = Image.new("RGB", (w, h))
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            other = Image.fromarray(others[int(rng.integers(len(others)))]).resize((tile, tile), Image.Resampling.BICUBIC)
            canvas.paste(other.filter(ImageFilter.GaussianBlur(tile / 10)), (x, y))
    return np.asarray(canvas)


def _in_frame(kind: str, rotate: bool = False):
    def make(crop, rng, others, fonts):
        big = _enlarge(crop, float(rng.uniform(2, 4)))
        side = big.shape[0]
        long_side = round(side * float(rng.uniform(3, 6)))
        ratio = float(rng.choice([3 / 4, 4 / 3, 9 / 16, 16 / 9]))
        w, h = (long_side, round(long_side / ratio)) if ratio > 1 else (round(long_side * ratio), long_side)
        w, h = max(w, side + 2), max(h, side + 2)
        frame = _background(kind, rng, h, w, others, fonts).copy()
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        frame[y:y + side, x:x + side] = big
        if rotate:
            angle = float(rng.uniform(2, 6) * rng.choice((-1, 1)))
            frame = np.asarray(Image.fromarray(frame).rotate(angle, Image.Resampling.BICUBIC, expand=False,
                                                             fillcolor=tuple(int(v) for v in frame[0, 0])))
        return frame
    return make


def _as_phone_photo(make, long_side: int = 4032):
    """The same picture with a phone camera's pixels: enlarged to ``long_side`` on its longer side
    (then, as a JPEG, decoded at a reduced scale)."""
    def enlarged(crop, rng, others, fonts):
        picture = Image.fromarray(make(crop, rng, others, fonts))
        k = long_side / max(picture.size)
        return np.asarray(picture.resize((round(picture.width * k), round(picture.height * k)), Image.Resampling.BICUBIC))
    return enlarged


def in_poor_light(picture: np.ndarray, rng) -> np.ndarray:
    """A uint8 picture taken in poor light: underexposed (0.3 to 0.6 of the light), the light
    falling off across it, a warm cast (tungsten or sodium lamps) and a dim sensor's noise."""
    picture = picture.astype(np.float32) / 255
    ramp = light_ramp(*picture.shape[:2], float(rng.uniform(0, 2 * np.pi)))
    light = float(rng.uniform(0.3, 0.6)) * (1 + float(rng.uniform(0.6, 1.4)) * ramp)
    cast = np.array([1.0, rng.uniform(0.8, 0.95), rng.uniform(0.55, 0.8)], np.float32)
    picture = picture * light[..., None] * cast + rng.normal(0, rng.uniform(0.015, 0.04), picture.shape)
    return np.clip(picture * 255, 0, 255).astype(np.uint8)


def _badly_lit(make):
    """The same picture taken in poor light (``in_poor_light``)."""
    def dim(crop, rng, others, fonts):
        return in_poor_light(make(crop, rng, others, fonts), rng)
    return dim


VARIANTS = {
    "tight square photo (3-8x)": tight_square,
    "tight tall box (aspect 1.3-2.2)": tall_box,
    "in a 3-6x frame: plain wall": _in_frame("plain wall"),
    "in a 3-6x frame: textured wall": _in_frame("textured wall"),
    "in a 3-6x frame: street scene": _in_frame("street scene"),
    "in a 3-6x frame: blurred crops": _in_frame("blurred crops"),
    "in a 3-6x frame, rotated 2-6 deg": _in_frame("textured wall", rotate=True),
    "plain wall frame as a 12 MP photo": _as_phone_photo(_in_frame("plain wall")),
    "plain wall frame, badly lit": _badly_lit(_in_frame("plain wall")),
}
# the phone photo and the badly lit one are the plain wall frame, picture for picture (same seeds),
# enlarged or dimmed: paired comparisons
SEED_OF = {name: list(VARIANTS).index("in a 3-6x frame: plain wall")
           for name in ("plain wall frame as a 12 MP photo", "plain wall frame, badly lit")}


def load_locator(localiser: str) -> Predictor:
    ensure_onnx(localiser)                                   # as served: int8 when it passed its check
    return load_predictor(localiser, "onnx", threads=2)


def readers(checkpoint: str | Path, locator: Predictor) -> dict[str, Reader]:
    """The five ways of reading, all through ``model.reading.Reader`` on ONNX Runtime."""
    ensure_onnx(checkpoint)                                  # as served: int8 when it passed its check
    classifier = load_predictor(checkpoint, "onnx", threads=2)
    info = classifier.info
    common = dict(input_size=info["input_size"], mean=info["mean"], std=info["std"])

    class WholePicture(Reader):      # "views only": the square around the whole picture
        def read(self, picture, box=None):
            return super().read(picture, box or (0, 0, *picture.size))

    return {
        "centred crop": Reader(classifier.predict, None, views=VIEWS[:1], **common),
        "views only": WholePicture(classifier.predict, None, **common),
        "localiser": Reader(classifier.predict, locator.forward, views=VIEWS[:1], **common),
        SERVED: Reader(classifier.predict, locator.forward, **common),
        "loc + views, max": Reader(classifier.predict, locator.forward, combine="most confident", **common),
    }


def photo_rng(draw: int, i: int, variant: str) -> np.random.Generator:
    """The generator of real image i's picture of ``variant``: draw 0 draws the suite's own pictures,
    another draw other pictures of the same kinds (to confirm a result on pictures never looked at)."""
    return np.random.default_rng([2026 + draw, i, SEED_OF.get(variant, list(VARIANTS).index(variant))])


def photo_accuracy(ways_of: Callable[[int], dict[str, Reader]], images: np.ndarray, labels: np.ndarray, fonts,
                   draw: int = 0) -> dict[str, list[bool]]:
    """Each variant of each real image read every way; ``ways_of(i)``: the readers for image i.
    Returns, for each variant, whether the served way (``SERVED``) read each image right."""
    served = {}
    print(f"{'variant (541 real SVHN digits)':<36}" + "".join(f"{w:>19}" for w in WAYS) + "   refused (loc+views)")
    for name, make in VARIANTS.items():
        right = {w: 0 for w in WAYS}
        refused, served[name] = 0, []
        for i, (crop, label) in enumerate(zip(images, labels)):
            rng = photo_rng(draw, i, name)
            picture = _jpeg(make(crop, rng, images, fonts), rng)
            for way, reader in ways_of(i).items():
                r = reader.read(picture)
                right[way] += r.digit == label
                if way == SERVED:
                    refused += r.digit is None
                    served[name].append(bool(r.digit == label))
        n = len(labels)
        print(f"{name:<36}" + "".join(f"{right[w] / n:>18.2%} " for w in WAYS) + f"   {refused / n:>8.2%}")
    return served


def original_accuracy(ways_of: Callable[[int], dict[str, Reader]], images, labels) -> float:
    pred = []
    for i, crop in enumerate(images):
        reader = ways_of(i)["centred crop"]
        pred.append(int(np.argmax(reader.classify(np.stack([_normalized(reader, crop)]))[0])))
    return float(np.mean(np.asarray(pred) == labels))


def real_image_readers(args, locator: Predictor, ways: dict[str, Reader], labels: np.ndarray
                       ) -> tuple[Callable[[int], dict[str, Reader]], str]:
    """Who reads real image i (``--checkpoint``, or with ``--crossval`` its fold's model), and how to
    say so; exits with a message if ``--checkpoint`` trained on the images and no ``--crossval``."""
    if not args.crossval:
        if trained_on(args.checkpoint, args.npz):
            sys.exit(f"error: {args.checkpoint} trained on {Path(args.npz).name}: score it through its "
                     f"cross-validation with --crossval DIR (see --help)")
        return (lambda i: ways), f"{Path(args.checkpoint).name}, never trained on them"
    try:
        models, fold_of = fold_models(args.crossval, labels)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    per_fold = [readers(m, locator) for m in models]
    return (lambda i: per_fold[fold_of[i]]), (f"each read by the model of {args.crossval} that never saw "
                                               f"it, {len(models)} folds")


def _normalized(reader: Reader, crop: np.ndarray) -> np.ndarray:
    from model.preprocess import preprocess

    return preprocess(Image.fromarray(crop), reader.input_size, reader.mean, reader.std)[0]


def box_accuracy(reader: Reader, fonts, n: int, draw: int = 0) -> tuple[list[bool], float]:
    """Of rendered test scenes with digits: whether the main box found has IoU >= 0.5 with the true
    main digit (largest and most central), scene by scene, and the fraction where it has with any
    whole digit (in a house number of equal digits, which one is "main" is close to a coin toss)."""
    hits, any_digit = [], 0
    for i in range(n):
        side = np.random.default_rng(i if draw == 0 else [draw, i]).integers(160, 641)
        scene = render_scene(np.random.default_rng([draw, SCENE_SPLIT_IDS["test"], i]), fonts, size=int(side))
        if len(scene.boxes) == 0:
            continue
        picture = Image.fromarray(scene.image)
        found, _ = reader.find(picture)
        truth = main_detection([Detection(tuple(map(float, b)), 1.0) for b in scene.boxes], picture.size)
        hits.append(bool(found is not None and iou(found.box, truth.box) >= 0.5))
        any_digit += found is not None and any(iou(found.box, tuple(map(float, b))) >= 0.5 for b in scene.boxes)
    return hits, any_digit / max(len(hits), 1)


def digit_free(reader: Reader, fonts, n: int, draw: int = 0) -> dict[str, list[bool]]:
    """Whether each digit-free picture, by kind, was answered "no digit"."""
    rng = np.random.default_rng(7 if draw == 0 else [7, draw])

    def wall_with_letters() -> np.ndarray:
        return (_draw_letters(rng, _wall(rng, 360, 480), fonts) * 255).clip(0, 255).astype(np.uint8)

    cases = {
        "blank white": lambda: np.full((360, 480, 3), 255, np.uint8),
        "random noise": lambda: rng.integers(0, 256, (360, 480, 3), dtype=np.uint8),
        "bare wall": lambda: (_draw_clutter(rng, _wall(rng, 360, 480)) * 255).clip(0, 255).astype(np.uint8),
        "wall with letters": wall_with_letters,
        "large letter A": lambda: _letter("A", rng, fonts),
        "dim wall, letters": lambda: in_poor_light(wall_with_letters(), rng),
    }
    out = {}
    for name, make in cases.items():
        count = n if name not in ("blank white",) else 1
        out[name] = [reader.read(_jpeg(make(), rng)).digit is None for _ in range(count)]
    return out


def paired(now: dict[str, list[bool]], before: dict[str, list[bool]]) -> list[tuple[str, int, int, float]]:
    """Picture by picture against an earlier run of the suite: (name, gained, lost, one standard
    error of gained - lost) for every list both hold with the same length. The standard error is
    McNemar's, sqrt(gained + lost): of pictures read the same both times, none tells them apart."""
    rows = []
    for name, outcomes in now.items():
        if len(before.get(name, ())) != len(outcomes):
            continue
        gained = sum(a and not b for a, b in zip(outcomes, before[name]))
        lost = sum(b and not a for a, b in zip(outcomes, before[name]))
        rows.append((name, gained, lost, float(np.sqrt(gained + lost))))
    return rows


def earlier_run(path: str, draw: int = 0) -> dict[str, list[bool]]:
    """The outcomes an earlier run wrote with ``--save``; exits with a message if it cannot be read
    or holds another draw's pictures."""
    try:
        saved = json.loads(Path(path).read_text())
        outcomes, drawn = saved["outcomes"], saved.get("draw", 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        sys.exit(f"error: --against {path}: not a file written by --save ({type(e).__name__}: {e})")
    if drawn != draw:
        sys.exit(f"error: --against {path}: its pictures are --draw {drawn}, this run's --draw {draw}; "
                 f"compare runs of the same draw")
    return outcomes


def _letter(char: str, rng, fonts) -> np.ndarray:
    from train.synth import get_font

    image = Image.new("RGB", (300, 300), (240, 240, 235))
    font = get_font(str(fonts[int(rng.integers(len(fonts)))]), 220)
    ImageDraw.Draw(image).text((150, 150), char, fill=(20, 20, 30), font=font, anchor="mm")
    return np.asarray(image)


def picture_sheet(reader: Reader, fonts, path: str, n: int = 6) -> None:
    """A small PNG for the README: rendered photos with the box found and what the network saw."""
    tile = 200
    sheet = Image.new("RGB", (n * tile, tile + 80), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    for i in range(n):
        scene = render_scene(np.random.default_rng([1, 12, i + 3]), fonts, size=480)
        picture = Image.fromarray(scene.image)
        r = reader.read(picture)
        scale = tile / max(picture.size)
        small = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        d = ImageDraw.Draw(small)
        if r.box:
            d.rectangle([v * scale for v in r.box], outline=(255, 40, 40), width=3)
        sheet.paste(small, (i * tile + (tile - small.width) // 2, (tile - small.height) // 2))
        if r.seen is not None:
            sheet.paste(r.seen.resize((64, 64), Image.Resampling.NEAREST), (i * tile + 8, tile + 8))
        text = "no digit" if r.digit is None else f"{r.digit}  ({r.confidence:.0%})"
        draw.text((i * tile + 84, tile + 30), text, fill=(20, 20, 20))
    sheet.convert("P", palette=Image.Palette.ADAPTIVE, colors=128).save(path, optimize=True)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"))
    p.add_argument("--localiser", default=str(REPO / "checkpoints" / "localiser.pt"))
    p.add_argument("--npz", default=str(REPO.parent / "shared" / "data" / "svhn" / "svhn_real_val.npz"))
    p.add_argument("--limit", type=int, default=None, help="first N real images only (quick runs)")
    p.add_argument("--scenes", type=int, default=2000,
                   help="rendered test scenes for box accuracy (about 72%% with digits; 2,000: one standard error about 1.2 points)")
    p.add_argument("--crossval", default=None, metavar="DIR",
                   help="read each real image with the model of its fold in this cross-validation folder")
    p.add_argument("--picture", default=None, help="also write the README's picture (PNG) here")
    p.add_argument("--only-picture", action="store_true", help="write the picture and stop")
    p.add_argument("--draw", type=int, default=0, metavar="N",
                   help="another draw of the same kinds of pictures (0: the suite's own), to confirm a result on "
                        "pictures never looked at")
    p.add_argument("--save", default=None, metavar="JSON", help="write every picture's outcome here, for --against")
    p.add_argument("--against", default=None, metavar="JSON",
                   help="compare picture by picture with an earlier run's --save (gained, lost, standard error)")
    args = p.parse_args()
    if args.draw < 0:
        sys.exit(f"error: --draw {args.draw}: a draw is a whole number, 0 or more (0: the suite's own pictures)")
    if not args.only_picture and not Path(args.npz).is_file():
        sys.exit(f"error: {args.npz}: no such file (the real digits; give another with --npz FILE.npz)")
    before = earlier_run(args.against, args.draw) if args.against else None
    fonts = tuple(find_fonts())
    locator = load_locator(args.localiser)
    ways = readers(args.checkpoint, locator)
    if args.only_picture:
        picture_sheet(ways[SERVED], fonts, args.picture or "reading.png")
        return
    with np.load(args.npz) as f:
        images, labels = f["x"], f["y"]
    ways_of, who = real_image_readers(args, locator, ways, labels)
    images, labels = images[:args.limit], labels[:args.limit]
    began = time.perf_counter()
    print(f"original 32x32 crops, classifier alone: {original_accuracy(ways_of, images, labels):.2%} "
          f"({len(labels)} images; {who})")
    as_uploaded = np.mean([ways_of(i)[SERVED].read(Image.fromarray(c)).digit == y
                           for i, (c, y) in enumerate(zip(images, labels))])
    print(f"original 32x32 crops, each uploaded as it is (localiser + views): {as_uploaded:.2%}")
    outcomes = photo_accuracy(ways_of, images, labels, fonts, args.draw)
    hits, any_digit = box_accuracy(ways[SERVED], fonts, args.scenes, args.draw)
    print(f"box IoU >= 0.5 with the main digit: {np.mean(hits):.2%} of {len(hits)} rendered test scenes with digits "
          f"(with any whole digit: {any_digit:.2%})")
    outcomes["box IoU >= 0.5"] = hits
    for name, refused in digit_free(ways[SERVED], fonts, 50, args.draw).items():
        print(f"digit-free: {name:<20} answered 'no digit' {np.mean(refused):.0%}")
        outcomes[f"digit-free: {name}"] = refused
    print(f"({time.perf_counter() - began:.0f} s; no-digit reasons: {NOTHING_FOUND!r}, {FAINT!r})")
    if before is not None:
        print(f"picture by picture against {args.against} (localiser + views; +- one standard error):")
        for name, gained, lost, se in paired(outcomes, before):
            print(f"  {name:<36} {gained - lost:+5d} ({gained} gained, {lost} lost, +-{se:.1f})")
    if args.save:
        Path(args.save).write_text(json.dumps({"localiser": args.localiser, "checkpoint": args.checkpoint,
                                               "crossval": args.crossval, "draw": args.draw, "outcomes": outcomes}))
    if args.picture:
        picture_sheet(ways[SERVED], fonts, args.picture)


if __name__ == "__main__":
    main()
