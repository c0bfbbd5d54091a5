"""SynthDigits: synthetic SVHN-style 32x32 digit crops rendered from system fonts.

Follows the idea of Ganin & Lempitsky (2015): render a house number (the labelled digit plus
same-font neighbours) in a random installed typeface, distort it (rotation, shear, stretch,
perspective), colour it (plates, gradients, outlines, shadows, clutter, uneven light), crop a
square around the labelled digit at twice the output resolution and degrade it (blur,
downsampling, noise, JPEG) so it looks like a real SVHN crop. Every sample is drawn from its own
generator ``np.random.default_rng([seed, SPLIT_IDS[split], index])``, so datasets are reproducible
whatever the number of worker processes, and the splits never share a sample.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import io
import logging
import multiprocessing
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

# Debian packages whose faces the generator relies on (README and CI install these).
FONT_PACKAGES: tuple[str, ...] = (
    "fonts-dejavu", "fonts-liberation", "fonts-noto-core", "fonts-urw-base35",
    "fonts-freefont-ttf", "fonts-roboto-unhinted", "fonts-croscore", "fonts-texgyre",
    "fonts-lato", "fonts-inter", "fonts-cmu", "fonts-open-sans", "fonts-dseg", "fonts-ocr-a",
    "fonts-ocr-b", "fonts-comic-neue", "fonts-allerta", "fonts-b612", "fonts-bebas-neue",
    "fonts-cantarell", "fonts-comfortaa", "fonts-dosis", "fonts-go", "fonts-hack", "fonts-jura",
    "fonts-karla", "fonts-league-spartan", "fonts-manrope", "fonts-play", "fonts-quicksand",
    "fonts-routed-gothic", "fonts-yanone-kaffeesatz", "fonts-dkg-handwriting", "fonts-breip",
    "fonts-firacode", "fonts-crosextra-carlito", "fonts-crosextra-caladea", "fonts-sil-andika",
    "fonts-femkeklaver", "fonts-beteckna", "fonts-staypuft", "fonts-linuxlibertine",
    "fonts-vollkorn", "fonts-ubuntu-title",
)
DEFAULT_FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts", "/usr/local/share/fonts")
FONT_DIRS_ENV = "SYNTH_FONT_DIRS"  # folders to search instead (os.pathsep-separated), e.g. a train.fontkit kit
FONT_SUFFIXES: tuple[str, ...] = (".ttf", ".otf", ".ttc", ".pfb", ".t1")  # preference order
GENERATOR_VERSION = 5
SPLIT_IDS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DIGITS = "0123456789"
TOFU_PROBE = chr(0x10FFFD)  # plane-16 private-use codepoint: no real face defines it
PROBE_FONT_SIZE = 24  # px; font-filter renders are small so scanning hundreds of faces is quick
SHAPE_SIDE = 12  # px; digit shapes are compared at this size to spot symbol faces
MIN_DIGIT_LIKENESS = 4  # of 10 digits must be nearest their own consensus shape
MIN_INK_RATIO = 0.12  # median digit ink / height^2; below it strokes vanish at 32 px
RENDER_SCALE = 2  # warp glyph masks at 2x the output size, then downsample with antialiasing
FONT_SIZES: tuple[int, ...] = (40, 52)  # px; hinting varies, the font cache stays small
BLUE_HUE, WARM_HUE = 0.6, 0.08  # HSV hues of enamel plates and of brass/brick/wood
HUE_MIX = (0.4, 0.75)  # cumulative P(blue-ish hue), P(blue or warm); the rest is any hue
FONT_CDF_MEMO_SIZE = 8  # font lists whose sampling weights are remembered
STRETCH_LOG_MEAN = -0.3  # house-number faces are condensed: real SVHN digits are narrow
NEIGHBOUR_COUNT_CDF = np.array([0.3, 0.8])  # neighbours per side: P(0)=0.3, P(1)=0.5, P(2)=0.2
BLUR_RANGES = ((0.3, 0.8), (0.8, 1.4), (1.4, 2.2))  # Gaussian radius in output px: sharp, soft, blurred
BLUR_CDF = np.array([0.4, 0.8])  # P(sharp)=0.4, P(soft)=0.4, P(blurred)=0.2
CLUTTER_MAX = 3  # lines and rings over the plate (wires, edges, bolts, other signs): 0-3, uniform
CLUTTER_OPACITY = 0.8


@dataclass(frozen=True)
class DigitStyle:
    """Every random choice behind one rendered crop (lengths are fractions of the font size).

    Attributes:
        font: Face used for the whole house number.
        font_size: Pixel size the text is drawn at before the crop transform.
        left: Neighbouring digits drawn left of the label, outermost first.
        right: Neighbouring digits drawn right of the label.
        gap: Extra space between digit advances, as a fraction of the font size.
        stroke: Extra stroke width in px (synthetic bold), 0 for the face's own weight.
        height_frac: Height of the labelled glyph as a fraction of the crop side.
        shift: Crop-centre offset (x, y) as a fraction of the crop side.
        rotation: Rotation in radians.
        shear: Horizontal shear factor (italic-like slant).
        stretch: Horizontal scale (>1 wider, <1 condensed).
        perspective: Projective terms (g, h) in output pixels^-1.
        fg, bg, wall: RGB colours (0-1) of the digits, plate and surrounding wall.
        outline: (width px, RGB) of a contour around the digits, or None.
        shadow: (dx, dy, alpha) of a drop shadow in output px, or None; negative alpha embosses.
        plate_edge: (angle, distance as fraction of the crop side) of the plate border, or None.
        light: (gradient strength, gradient angle, blotch strength) of uneven lighting.
        grain: Standard deviation of the plate's texture grain (0-1 scale).
        clutter: Lines and ellipse outlines over the plate, each (is_line, x0, y0, x1, y1, width):
            corners as fractions of the crop side, width in px of a 32-px crop.
        clutter_colour: RGB colour of the clutter.
        blur: Gaussian blur radius in output px.
        low_res: Side the crop is squeezed to before upscaling to the output, or 0.
        noise: Standard deviation of pixel noise (0-255 scale).
        jpeg: JPEG quality, or 0 for none.
    """

    font: Path
    font_size: int = FONT_SIZES[-1]
    left: tuple[int, ...] = ()
    right: tuple[int, ...] = ()
    gap: float = 0.05
    stroke: int = 0
    height_frac: float = 0.7
    shift: tuple[float, float] = (0.0, 0.0)
    rotation: float = 0.0
    shear: float = 0.0
    stretch: float = 1.0
    perspective: tuple[float, float] = (0.0, 0.0)
    fg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bg: tuple[float, float, float] = (1.0, 1.0, 1.0)
    wall: tuple[float, float, float] = (1.0, 1.0, 1.0)
    outline: tuple[int, tuple[float, float, float]] | None = None
    shadow: tuple[float, float, float] | None = None
    plate_edge: tuple[float, float] | None = None
    light: tuple[float, float, float] = (0.0, 0.0, 0.0)
    grain: float = 0.0
    clutter: tuple[tuple[float, ...], ...] = ()
    clutter_colour: tuple[float, float, float] = (0.0, 0.0, 0.0)
    blur: float = 0.0
    low_res: int = 0
    noise: float = 0.0
    jpeg: int = 0


# ----------------------------------------------------------------------------- fonts


@functools.lru_cache(maxsize=None)
def get_font(path: str | Path, size: int) -> ImageFont.FreeTypeFont:
    """Open a face once per (path, size) in this process."""
    return ImageFont.truetype(str(path), size, layout_engine=ImageFont.Layout.BASIC)


def _glyph_bitmap(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    """Render `text` on a square canvas of twice the font size and return its pixels."""
    side = 2 * font.size
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((side // 4, side // 4), text, fill=255, font=font)
    return np.asarray(img)


def _ink_ratio(glyphs: Sequence[np.ndarray]) -> float:
    """Median over glyphs of ink area / ink height^2: a stroke-weight measure free of size."""
    ratios = []
    for glyph in glyphs:
        rows = np.flatnonzero(glyph.max(axis=1) >= 128)
        height = rows[-1] - rows[0] + 1
        ratios.append(glyph.sum() / 255.0 / height ** 2)
    return float(np.median(ratios))


def digit_signature(path: str | Path, size: int = PROBE_FONT_SIZE) -> bytes | None:
    """Fingerprint a face's ten digits, or None when it cannot draw ten distinct digits.

    A face fails when it cannot be opened, when a digit is blank, when a digit renders like a
    codepoint no face defines (tofu or .notdef box), when two digits render identically, or
    when its strokes are hairlines that vanish at SVHN resolution.

    Args:
        path: Font file.
        size: Probe size in px.

    Returns:
        A hash of the ten digit renders (equal for visually identical faces), or None.
    """
    try:
        font = get_font(str(path), size)
        tofu = _glyph_bitmap(font, TOFU_PROBE)
        glyphs = [_glyph_bitmap(font, d) for d in DIGITS]
    except (OSError, ValueError):
        return None
    blobs = [g.tobytes() for g in glyphs]
    if any(g.max() < 128 for g in glyphs) or tofu.tobytes() in blobs or len(set(blobs)) < 10:
        return None
    if _ink_ratio(glyphs) < MIN_INK_RATIO:
        return None
    return hashlib.sha1(b"".join(blobs)).digest()


def font_draws_digits(path: str | Path) -> bool:
    """True when the face at `path` draws ten distinct, non-empty, non-tofu digits."""
    return digit_signature(path) is not None


def _candidate_files(dirs: Sequence[str | Path]) -> list[Path]:
    """Font files under `dirs`, sorted by suffix preference then path (deterministic)."""
    files = {p for d in dirs if Path(d).is_dir() for p in Path(d).rglob("*")
             if p.suffix.lower() in FONT_SUFFIXES and p.is_file()}
    return sorted(files, key=lambda p: (FONT_SUFFIXES.index(p.suffix.lower()), str(p)))


def _distinct_faces(candidates: Sequence[Path]) -> tuple[list[Path], int, int]:
    """Faces that draw ten digits, one per face name and per rendering; with drop counts."""
    kept: list[Path] = []
    seen_names: set[tuple[str, str]] = set()
    seen_renders: set[bytes] = set()
    broken = duplicates = 0
    for path in candidates:
        signature = digit_signature(path)
        if signature is None:
            broken += 1
            continue
        name = get_font(str(path), PROBE_FONT_SIZE).getname()
        if name in seen_names or signature in seen_renders:
            duplicates += 1  # same face in another format, or digits copied from another face
            continue
        seen_names.add(name)
        seen_renders.add(signature)
        kept.append(path)
    return kept, broken, duplicates


def _digit_shapes(path: Path) -> np.ndarray:
    """(10, SHAPE_SIDE**2) unit vectors: each digit's ink box, padded square and shrunk."""
    font = get_font(str(path), PROBE_FONT_SIZE)
    shapes = []
    for digit in DIGITS:
        glyph = Image.fromarray(_glyph_bitmap(font, digit))
        x0, y0, x1, y1 = glyph.getbbox()
        side = max(x1 - x0, y1 - y0)
        left, top = (x0 + x1 - side) // 2, (y0 + y1 - side) // 2
        glyph = glyph.crop((left, top, left + side, top + side)).resize(
            (SHAPE_SIDE, SHAPE_SIDE), Image.Resampling.BILINEAR)
        vec = np.asarray(glyph, np.float32).ravel()
        vec -= vec.mean()
        shapes.append(vec / (np.linalg.norm(vec) + 1e-6))
    return np.stack(shapes)


def _digit_like(paths: Sequence[Path]) -> list[Path]:
    """Faces whose digits mostly look like the consensus digits of all faces.

    Symbol faces (dingbats, weather icons, keyboard keys) map the digit codepoints to other
    pictures; their glyphs are nearest to the wrong consensus digit.
    """
    shapes = np.stack([_digit_shapes(p) for p in paths])  # (F, 10, D)
    centroids = shapes.mean(axis=0)  # (10, D)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-6
    nearest = np.einsum("fdk,ck->fdc", shapes, centroids).argmax(axis=-1)  # (F, 10)
    hits = (nearest == np.arange(10)).sum(axis=1)
    return [p for p, h in zip(paths, hits) if h >= MIN_DIGIT_LIKENESS]


@functools.lru_cache(maxsize=None)
def _find_fonts_cached(dirs: tuple[str, ...]) -> tuple[Path, ...]:
    """`find_fonts` on a hashable argument, so each process scans the font folders once."""
    candidates = _candidate_files(dirs)
    faces, broken, duplicates = _distinct_faces(candidates)
    kept = _digit_like(faces) if faces else []
    log.info("find_fonts: using %d faces of %d files; dropped %d without ten distinct digits, "
             "%d duplicates and %d whose digits do not look like digits", len(kept),
             len(candidates), broken, duplicates, len(faces) - len(kept))
    if not kept:
        raise RuntimeError(f"No usable digit font under {list(dirs)}. Install the Debian "
                           f"packages: apt-get install {' '.join(FONT_PACKAGES)}")
    return tuple(kept)


def font_dirs() -> tuple[str, ...]:
    """The folders faces are searched in: ``$SYNTH_FONT_DIRS`` if set, else DEFAULT_FONT_DIRS."""
    env = os.environ.get(FONT_DIRS_ENV, "")
    return tuple(d for d in env.split(os.pathsep) if d) or DEFAULT_FONT_DIRS


def find_fonts(dirs: Sequence[str | Path] | None = None) -> list[Path]:
    """Discover installed faces that can draw ten distinct digits.

    Args:
        dirs: Directories searched recursively for .ttf/.otf/.ttc/.pfb/.t1 files (default:
            ``font_dirs()``).

    Returns:
        Usable font paths, one per distinct face, in a deterministic order.

    Raises:
        RuntimeError: When no usable face is found (the message names the packages to install).
    """
    return list(_find_fonts_cached(tuple(str(d) for d in (font_dirs() if dirs is None else dirs))))


# ----------------------------------------------------------------------------- style sampling


def _random_colour(rng: np.random.Generator, value: float) -> tuple[float, float, float]:
    """An RGB colour with HSV value `value`, mostly low saturation, hue mostly blue or warm.

    House-number plates are mostly grey, white, black, blue enamel, brass, brick or wood.
    """
    saturation = float(rng.beta(1.0, 5.0))
    pick = rng.random()
    centre = BLUE_HUE if pick < HUE_MIX[0] else WARM_HUE if pick < HUE_MIX[1] else rng.random()
    hue = float(centre + rng.normal(0.0, 0.04)) % 1.0
    return colorsys.hsv_to_rgb(hue, saturation, value)


def _sample_colours(rng: np.random.Generator) -> tuple[tuple[float, float, float], ...]:
    """(fg, bg, wall) with a realistic, sometimes low, digit-to-plate contrast."""
    bg_value = float(rng.uniform(0.05, 0.98))
    contrast = float(rng.uniform(0.1, 0.65))
    darker = rng.random() < (0.85 if bg_value > 0.5 else 0.15)
    fg_value = bg_value - contrast if darker else bg_value + contrast
    if not 0.0 <= fg_value <= 1.0:
        fg_value = bg_value + contrast if darker else bg_value - contrast
    fg_value = float(np.clip(fg_value, 0.0, 1.0))
    wall = _random_colour(rng, float(rng.uniform(0.1, 0.95)))
    return _random_colour(rng, fg_value), _random_colour(rng, bg_value), wall


def _sample_neighbours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Digits of the house number on each side of the label (often one or two, sometimes none)."""
    counts = np.searchsorted(NEIGHBOUR_COUNT_CDF, rng.random(2), side="right")
    left = tuple(int(d) for d in rng.integers(0, 10, counts[0]))
    right = tuple(int(d) for d in rng.integers(0, 10, counts[1]))
    return left, right


def _sample_geometry(rng: np.random.Generator) -> dict:
    """Crop and distortion parameters."""
    italic = rng.random() < 0.15
    return dict(
        gap=float(rng.uniform(-0.04, 0.25) if rng.random() < 0.85 else rng.uniform(0.25, 0.6)),
        height_frac=float(rng.uniform(0.75, 1.0)),  # SVHN boxes are squared on the digit's height
        shift=(float(rng.normal(0, 0.02)), float(rng.normal(0, 0.03))),
        rotation=float(np.clip(rng.normal(0, 0.08), -0.3, 0.3)),
        shear=float(rng.uniform(-0.35, -0.12) if italic else rng.normal(0, 0.08)),
        stretch=float(np.exp(STRETCH_LOG_MEAN + np.clip(rng.normal(0, 0.15), -0.4, 0.4))),
        perspective=tuple(float(v) for v in rng.normal(0, 0.002, 2)),
    )


def _sample_effects(rng: np.random.Generator) -> dict:
    """Outline, shadow/emboss, plate edge and lighting parameters."""
    outline = None
    if rng.random() < 0.15:
        outline = (int(rng.integers(1, 4)), _random_colour(rng, float(rng.random())))
    shadow = None
    if rng.random() < 0.2:
        dx, dy = rng.uniform(0.5, 2.0, 2) * rng.choice((-1, 1), 2)
        shadow = (float(dx), float(dy), float(rng.uniform(0.3, 0.9) * rng.choice((-1, 1))))
    plate_edge = None
    if rng.random() < 0.3:
        angle = float(rng.choice((0.0, 0.5, 1.0, 1.5)) * np.pi + rng.normal(0, 0.1))
        plate_edge = (angle, float(rng.uniform(0.3, 0.5)))
    light = (float(rng.uniform(0, 0.5)), float(rng.uniform(0, 2 * np.pi)),
             float(rng.uniform(0, 0.15)))
    clutter = tuple((float(rng.random() < 0.5), *(float(v) for v in rng.uniform(-0.2, 1.2, 4)),
                     float(rng.integers(1, 4))) for _ in range(rng.integers(0, CLUTTER_MAX + 1)))
    return dict(outline=outline, shadow=shadow, plate_edge=plate_edge, light=light,
                grain=float(rng.uniform(0.0, 0.05)), clutter=clutter,
                clutter_colour=_random_colour(rng, float(rng.random())))


def _sample_degradation(rng: np.random.Generator, size: int) -> dict:
    """Blur, resolution loss, noise and compression parameters."""
    # Many SVHN crops are small digits enlarged to 32 px: log-uniform sides down to a quarter.
    low_res = int(np.exp(rng.uniform(np.log(size // 4), np.log(size)))) if rng.random() < 0.5 else 0
    blur_range = BLUR_RANGES[int(np.searchsorted(BLUR_CDF, rng.random(), side="right"))]
    return dict(
        blur=float(rng.uniform(*blur_range)),
        low_res=low_res,
        noise=float(rng.uniform(0, 5)),
        jpeg=int(rng.integers(20, 95)) if rng.random() < 0.5 else 0,
    )


_FONT_CDF_MEMO: dict[int, tuple[Sequence[Path], np.ndarray]] = {}


def _font_cdf(fonts: Sequence[Path]) -> np.ndarray:
    """Cumulative sampling weights: each font folder (about one package) weighs sqrt(its size).

    This keeps big collections (Noto scripts, 50 seven-segment DSEG styles) from swamping the
    typeface mix. Memoised on the identity of `fonts`, which callers reuse across samples.
    """
    memo = _FONT_CDF_MEMO.get(id(fonts))
    if memo is not None and memo[0] is fonts:
        return memo[1]
    folders = [Path(f).parent for f in fonts]
    counts = {folder: folders.count(folder) for folder in set(folders)}
    cdf = np.cumsum([1.0 / np.sqrt(counts[folder]) for folder in folders])
    if len(_FONT_CDF_MEMO) >= FONT_CDF_MEMO_SIZE:
        _FONT_CDF_MEMO.clear()
    _FONT_CDF_MEMO[id(fonts)] = (fonts, cdf / cdf[-1])
    return _FONT_CDF_MEMO[id(fonts)][1]


def sample_style(rng: np.random.Generator, fonts: Sequence[Path], size: int = 32) -> DigitStyle:
    """Draw every random choice for one crop.

    Args:
        rng: Source of randomness.
        fonts: Faces to choose from (see `find_fonts`).
        size: Output side in px (scales resolution loss).

    Returns:
        The style to hand to `render_style`.
    """
    font = fonts[int(np.searchsorted(_font_cdf(fonts), rng.random(), side="right"))]
    fg, bg, wall = _sample_colours(rng)
    left, right = _sample_neighbours(rng)
    stroke = int(rng.integers(1, 4)) if rng.random() < 0.25 else 0
    return DigitStyle(
        font=font, font_size=int(rng.choice(FONT_SIZES)), left=left, right=right, stroke=stroke,
        fg=fg, bg=bg, wall=wall, **_sample_geometry(rng), **_sample_effects(rng),
        **_sample_degradation(rng, size),
    )


def plain_style(font: Path) -> DigitStyle:
    """A lone, undistorted, black-on-white digit (used to check labels by construction)."""
    return DigitStyle(font=font)


# What each ablation switches off, measured in the README's "what closed the gap" table.
ABLATIONS: tuple[str, ...] = ("fonts", "neighbours", "colour", "distortion", "degradation")
ABLATION_FONT = "DejaVuSans.ttf"  # the single face left by the "fonts" ablation


def ablate_style(style: DigitStyle, ablate: frozenset[str], fonts: Sequence[Path]) -> DigitStyle:
    """Switch parts of a sampled style off (after sampling, so the rest of the draw is unchanged).

    Raises:
        ValueError: For an ablation not in ABLATIONS.
    """
    unknown = set(ablate) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"Invalid ablation {sorted(unknown)}. Only {', '.join(ABLATIONS)} are supported.")
    changes: dict = {}
    if "fonts" in ablate:
        changes["font"] = next((f for f in fonts if Path(f).name == ABLATION_FONT), fonts[0])
        changes["stroke"] = 0
    if "neighbours" in ablate:
        changes.update(left=(), right=())
    if "colour" in ablate:
        changes.update(fg=(0.0, 0.0, 0.0), bg=(1.0, 1.0, 1.0), wall=(1.0, 1.0, 1.0), outline=None,
                       shadow=None, plate_edge=None, light=(0.0, 0.0, 0.0), grain=0.0, clutter=())
    if "distortion" in ablate:
        changes.update(rotation=0.0, shear=0.0, stretch=1.0, perspective=(0.0, 0.0))
    if "degradation" in ablate:
        changes.update(blur=0.0, low_res=0, noise=0.0, jpeg=0)
    return replace(style, **changes)


# ----------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=None)
def _digit_advances(path: str, size: int) -> tuple[float, ...]:
    """Pen advance of each digit 0-9 of a face at `size` px."""
    font = get_font(path, size)
    return tuple(font.getlength(digit) for digit in DIGITS)


def _layout(style: DigitStyle, label: int) -> tuple[list[str], np.ndarray, tuple[int, int], int]:
    """Characters of the house number, their pen x positions, canvas size and target index."""
    digits = (*style.left, label, *style.right)
    text = [DIGITS[d] for d in digits]
    size, widths = style.font_size, _digit_advances(str(style.font), style.font_size)
    advances = [widths[d] + style.gap * size + style.stroke for d in digits]
    xs = size + np.concatenate(([0.0], np.cumsum(advances[:-1])))
    return text, xs, (int(xs[-1] + advances[-1] + 2 * size), 2 * size), len(style.left)


def _draw_text(style: DigitStyle, label: int, extra_stroke: int = 0) -> tuple[Image.Image, tuple]:
    """Draw the house number on an 'L' canvas, thickened by `extra_stroke` px for outlines.

    Returns:
        The canvas and the ink bounding box (x0, y0, x1, y1) of the labelled digit alone.
    """
    font = get_font(str(style.font), style.font_size)
    text, xs, canvas_size, target = _layout(style, label)
    canvas = Image.new("L", canvas_size, 0)
    draw = ImageDraw.Draw(canvas)
    baseline, stroke = int(1.5 * style.font_size), style.stroke + extra_stroke
    order = [target] + [i for i in range(len(text)) if i != target]
    bbox = None
    for i in order:
        draw.text((float(xs[i]), baseline), text[i], fill=255, font=font, anchor="ls",
                  stroke_width=stroke, stroke_fill=255)
        bbox = canvas.getbbox() if bbox is None else bbox
    return canvas, bbox


def _crop_coeffs(style: DigitStyle, bbox: tuple, side_px: int) -> tuple[float, ...]:
    """PIL PERSPECTIVE coefficients mapping output pixels to canvas pixels around the digit."""
    x0, y0, x1, y1 = bbox
    crop = (y1 - y0) / style.height_frac  # crop side in canvas px
    centre = np.array([(x0 + x1) / 2 + style.shift[0] * crop,
                       (y0 + y1) / 2 + style.shift[1] * crop])
    cos, sin = np.cos(style.rotation), np.sin(style.rotation)
    linear = (crop / side_px) * np.array([[cos, -sin], [sin, cos]]) @ np.array(
        [[1.0 / style.stretch, style.shear], [0.0, 1.0]])
    affine = np.eye(3)
    affine[:2, :2], affine[:2, 2] = linear, centre
    projective = np.eye(3)
    projective[2, :2] = style.perspective
    to_centre = np.eye(3)
    to_centre[:2, 2] = -side_px / 2
    matrix = affine @ projective @ to_centre
    return tuple((matrix / matrix[2, 2]).flatten()[:8])


def _masks(style: DigitStyle, label: int, side_px: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Fill mask and optional outline mask (float32 0-1, side_px square) of the cropped text.

    The warp samples the canvas at RENDER_SCALE x `side_px` and the antialiased resize averages
    that down, so thin strokes neither alias nor vanish.
    """
    canvas, bbox = _draw_text(style, label)
    coeffs = _crop_coeffs(style, bbox, RENDER_SCALE * side_px)

    def warp(img: Image.Image) -> np.ndarray:
        out = img.transform((RENDER_SCALE * side_px,) * 2, Image.Transform.PERSPECTIVE, coeffs,
                            resample=Image.Resampling.BILINEAR)
        out = out.resize((side_px, side_px), Image.Resampling.BILINEAR)
        return np.asarray(out, dtype=np.float32) * np.float32(1 / 255)

    outline = None
    if style.outline is not None:
        outline = warp(_draw_text(style, label, extra_stroke=style.outline[0])[0])
    return warp(canvas), outline


@functools.lru_cache(maxsize=8)
def _grid(side_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates centred on the crop, scaled to [-0.5, 0.5]."""
    coords = (np.arange(side_px, dtype=np.float32) + 0.5) / side_px - 0.5
    return np.meshgrid(coords, coords)


def _shifted(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Mask translated by whole pixels (zero fill), for shadows and embossing."""
    out = np.zeros_like(mask)
    dx, dy, h, w = int(round(dx)), int(round(dy)), mask.shape[0], mask.shape[1]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _clutter_mask(clutter: tuple[tuple[float, ...], ...], side_px: int) -> np.ndarray:
    """Coverage (float32 0-1, side_px square) of the clutter's lines and ellipse outlines."""
    layer = Image.new("L", (side_px, side_px), 0)
    draw = ImageDraw.Draw(layer)
    for is_line, x0, y0, x1, y1, width in clutter:
        box = [v * side_px for v in (x0, y0, x1, y1)]
        px = max(1, round(width * side_px / 32))
        if is_line:
            draw.line(box, fill=255, width=px)
        else:
            draw.ellipse((min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])),
                         outline=255, width=px)
    return np.asarray(layer, np.float32)[..., None] * np.float32(CLUTTER_OPACITY / 255)


def _paint(img: np.ndarray, colour: Sequence[float], cover: np.ndarray) -> np.ndarray:
    """``colour`` laid over ``img`` (H, W, 3) where ``cover`` (H, W, 1), 0-1, says how much."""
    return img + (np.asarray(colour, np.float32) - img) * cover


def _background(style: DigitStyle, rng: np.random.Generator, side_px: int) -> np.ndarray:
    """Plate colour with an optional plate border showing the wall behind it, grain and clutter."""
    img = np.empty((side_px, side_px, 3), np.float32)
    img[:] = style.bg
    if style.plate_edge is not None:
        angle, distance = style.plate_edge
        xx, yy = _grid(side_px)
        signed = (xx * np.cos(angle) + yy * np.sin(angle) - distance) * side_px
        wall = np.clip(signed, 0.0, 1.0)[..., None]
        img = _paint(img, style.wall, wall)
    if style.grain > 0:
        img = img + rng.standard_normal((side_px, side_px, 1), dtype=np.float32) * style.grain
    if style.clutter:
        img = _paint(img, style.clutter_colour, _clutter_mask(style.clutter, side_px))
    return img


def _lighting(style: DigitStyle, rng: np.random.Generator, side_px: int) -> np.ndarray:
    """Multiplicative illumination field: a linear gradient plus soft blotches."""
    strength, angle, blotch = style.light
    xx, yy = _grid(side_px)
    field = 1.0 + strength * (xx * np.cos(angle) + yy * np.sin(angle))
    if blotch > 0:
        coarse = rng.normal(0.0, blotch, (4, 4)).astype(np.float32)
        field = field + np.asarray(Image.fromarray(coarse, "F").resize(
            (side_px, side_px), Image.Resampling.BICUBIC))
    return field[..., None]


def _compose(style: DigitStyle, label: int, rng: np.random.Generator, side_px: int) -> np.ndarray:
    """Colour the masks over the background; returns float32 RGB (side_px, side_px, 3) in 0-1."""
    fill, outline = _masks(style, label, side_px)
    img = _background(style, rng, side_px)
    if style.shadow is not None:
        dx, dy, alpha = style.shadow
        dark = _shifted(fill, dx, dy)[..., None] * abs(alpha)
        img = img * (1 - dark) if alpha > 0 else img * (1 - dark * 0.7)
        if alpha < 0:  # emboss: a highlight on the opposite side
            lit = _shifted(fill, -dx, -dy)[..., None] * abs(alpha)
            img = img + (1 - img) * lit * 0.7
    if outline is not None:
        img = _paint(img, style.outline[1], outline[..., None])
    img = _paint(img, style.fg, fill[..., None])
    return img * _lighting(style, rng, side_px)


def _degrade(img: np.ndarray, style: DigitStyle, rng: np.random.Generator, size: int) -> np.ndarray:
    """Blur, downsample to `size`, add noise and JPEG artefacts; returns uint8 (size, size, 3)."""
    pil = Image.fromarray(np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if style.blur > 0.1:
        pil = pil.filter(ImageFilter.GaussianBlur(style.blur))
    if style.low_res:
        pil = pil.resize((style.low_res, style.low_res), Image.Resampling.BILINEAR)
        pil = pil.resize((size, size), Image.Resampling.BILINEAR)
    out = np.asarray(pil, dtype=np.float32)
    if style.noise > 0:
        out = out + rng.normal(0.0, style.noise, out.shape).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    if style.jpeg:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=style.jpeg)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out


def render_style(style: DigitStyle, label: int, rng: np.random.Generator,
                 size: int = 32) -> np.ndarray:
    """Render one crop of `label` exactly as `style` describes.

    Args:
        style: All the crop's random choices (see `sample_style`, `plain_style`).
        label: Digit 0-9 centred in the crop.
        rng: Source of the pixel-level randomness (grain, blotches, noise).
        size: Output side in px.

    Returns:
        uint8 RGB image (size, size, 3).
    """
    assert 0 <= label <= 9, f"label must be a digit 0-9, got {label}"
    return _degrade(_compose(style, label, rng, size), style, rng, size)


def render_digit(rng: np.random.Generator, label: int, fonts: Sequence[Path],
                 size: int = 32, ablate: frozenset[str] = frozenset()) -> np.ndarray:
    """Render a random SVHN-like crop of `label`.

    Args:
        rng: Source of randomness (the crop is a pure function of its state).
        label: Digit 0-9 centred in the crop.
        fonts: Faces to choose from (see `find_fonts`).
        size: Output side in px.
        ablate: Parts of the generator to switch off (see ABLATIONS).

    Returns:
        uint8 RGB image (size, size, 3).
    """
    style = sample_style(rng, fonts, size)
    if ablate:
        style = ablate_style(style, ablate, fonts)
    return render_style(style, label, rng, size)


# ----------------------------------------------------------------------------- datasets


def _render_indices(args: tuple[np.ndarray, int, int, int, tuple[Path, ...], frozenset[str]],
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Render the samples with the given indices (a worker's chunk).

    Args:
        args: (indices, seed, split id, size, fonts, ablate), one tuple so Pool.map can pass it.
    """
    indices, seed, split_id, size, fonts, ablate = args
    x = np.empty((len(indices), size, size, 3), np.uint8)
    y = np.empty(len(indices), np.int64)
    for row, index in enumerate(indices):
        rng = np.random.default_rng([seed, split_id, int(index)])
        y[row] = rng.integers(10)
        x[row] = render_digit(rng, int(y[row]), fonts, size, ablate)
    return x, y


def generate(n: int, seed: int, split: str = "train", size: int = 32,
             workers: int = 1, ablate: frozenset[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """Render a SynthDigits split.

    Args:
        n: Number of samples.
        seed: Dataset seed; sample i comes from ``default_rng([seed, SPLIT_IDS[split], i])``.
        split: One of SPLIT_IDS ("train", "val", "test"); splits never share a sample.
        size: Output side in px.
        workers: Processes to render with; the result does not depend on it.
        ablate: Parts of the generator to switch off (see ABLATIONS), for ablation studies.

    Returns:
        x uint8 (n, size, size, 3) RGB and y int64 (n,) uniform random digits 0-9.

    Raises:
        ValueError: For an unknown split or a negative n.
    """
    if split not in SPLIT_IDS:
        raise ValueError(f"Invalid split {split!r}. Only {', '.join(SPLIT_IDS)} are supported.")
    if n < 0 or workers < 1:
        raise ValueError(f"Need n >= 0 and workers >= 1, got n={n}, workers={workers}")
    fonts = tuple(find_fonts())
    chunks = np.array_split(np.arange(n), max(1, min(n, workers * 4)))
    ablate = frozenset(ablate)
    if ablate:
        ablate_style(plain_style(fonts[0]), ablate, fonts)  # fail fast on an unknown name
    jobs = [(chunk, seed, SPLIT_IDS[split], size, fonts, ablate) for chunk in chunks]
    if workers == 1 or n < 2:
        parts = [_render_indices(job) for job in jobs]
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_render_indices, jobs)
    x = np.concatenate([p[0] for p in parts]) if parts else np.empty((0, size, size, 3), np.uint8)
    y = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
    return x, y


def load_or_generate(root: str | Path, n: int, seed: int, split: str, workers: int,
                     ablate: Sequence[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Load a cached split from root/synthdigits, rendering and caching it when missing.

    Args:
        root: Data directory; the cache file is
            ``root/synthdigits/{split}-{n}-{seed}-v{GENERATOR_VERSION}.npz``.
        n, seed, split, workers, ablate: As for `generate` (ablated sets get their own file).

    Returns:
        x uint8 (n, 32, 32, 3) and y int64 (n,).
    """
    tag = "".join(f"-no-{a}" for a in sorted(ablate))
    path = Path(root) / "synthdigits" / f"{split}-{n}-{seed}-v{GENERATOR_VERSION}{tag}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["x"], data["y"]
    x, y = generate(n, seed, split, workers=workers, ablate=frozenset(ablate))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, x=x, y=y)
    os.replace(tmp, path)
    log.info("load_or_generate: wrote %d %s samples to %s", n, split, path)
    return x, y
