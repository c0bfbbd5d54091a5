"""A small copy of the faces the generators draw with, for a machine that lacks the font packages.

    python -m train.fontkit OUT      # then, on the other machine: SYNTH_FONT_DIRS=OUT python main.py ...

The SynthDigits generator (``train.synth``) and the localiser's scenes (``train.scenes``) draw with
every installed face that passes ``find_fonts`` (487 of them here, 118 MB). A machine without the
Debian font packages and without a package registry (the lent GPU machine, whose tree may carry 64
MiB) renders the same images from this kit (22 MB): each face cut down to Latin-1 (``CHARACTERS``,
which holds the digits and the scenes' letters and symbols), with its outlines, hinting, metrics,
names and layout tables as they were, at the same path under OUT, so the faces keep their order and
their folders (which weigh the faces). After writing, the kit is checked: ``find_fonts``
over OUT must choose the same faces, and a few hundred digits and scenes drawn from it must equal
those drawn from the installed faces, pixel for pixel; otherwise the command fails.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from fontTools import subset

from train.scenes import render_scene
from train.synth import FONT_DIRS_ENV, find_fonts, render_digit

# Basic Latin and Latin-1, not only the characters drawn (DIGITS, DISTRACTORS): FreeType's auto-hinter
# measures a face's Latin letters (its blue zones) to hint a face that has no hints of its own, so
# with the drawn characters alone 85 of the 487 faces drew their digits otherwise (2026-12-01).
CHARACTERS = "".join(chr(c) for c in range(0x20, 0x100))
CHECK_DIGITS, CHECK_SCENES = 300, 30             # drawn both ways after writing the kit


def kit_path(face: Path, out: Path) -> Path:
    """Where an installed face goes in the kit: its absolute path (links not followed) under ``out``."""
    face = face.absolute()
    return out / face.relative_to(face.anchor)


def subset_face(source: Path, target: Path, characters: str = CHARACTERS) -> None:
    """Write ``source`` cut down to ``characters``: nothing else of the face changes (no table
    dropped, hinting and names kept, bounds and timestamps as they were)."""
    options = subset.Options()
    options.layout_features, options.name_IDs, options.name_languages = ["*"], ["*"], ["*"]
    options.name_legacy = options.notdef_glyph = options.notdef_outline = options.glyph_names = True
    options.legacy_kern = options.passthrough_tables = True
    options.drop_tables = []
    font = subset.load_font(str(source), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters)
    subsetter.subset(font)
    target.parent.mkdir(parents=True, exist_ok=True)
    subset.save_font(font, str(target), options)
    font.close()


def drawn(fonts: Sequence[Path], digits: int = CHECK_DIGITS, scenes: int = CHECK_SCENES) -> list[np.ndarray]:
    """Digit crops and scenes drawn with ``fonts`` from fixed seeds (to compare two font sets)."""
    fonts = tuple(fonts)
    out = [render_digit(np.random.default_rng([7, i]), i % 10, fonts, 32) for i in range(digits)]
    return out + [render_scene(np.random.default_rng([8, i]), fonts).image for i in range(scenes)]


def same_drawing(a: Sequence[Path], b: Sequence[Path], **counts: int) -> bool:
    """Whether the two face lists draw the same digits and scenes, pixel for pixel."""
    return all(np.array_equal(x, y) for x, y in zip(drawn(a, **counts), drawn(b, **counts), strict=True))


def write_kit(out: Path, faces: Sequence[Path]) -> list[Path]:
    """The kit of ``faces`` under ``out``; returns the kit's faces, in the same order."""
    kit = [kit_path(face, out) for face in faces]
    for face, target in zip(faces, kit):
        subset_face(face, target)
    return kit


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fontTools").setLevel(logging.ERROR)   # it reports every table of every face
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="folder to write the kit into (then SYNTH_FONT_DIRS=OUT)")
    args = p.parse_args(argv)
    faces = find_fonts()
    kit = write_kit(args.out, faces)
    size = sum(f.stat().st_size for f in kit)
    found = find_fonts([args.out])
    if found != kit:
        print(f"error: find_fonts over {args.out} chose {len(found)} faces, not the {len(kit)} installed ones",
              file=sys.stderr)
        return 1
    if not same_drawing(faces, kit):
        print(f"error: the kit under {args.out} draws other pixels than the installed faces", file=sys.stderr)
        return 1
    print(f"{len(kit)} faces, {size / 1e6:.1f} MB (installed: {sum(f.stat().st_size for f in faces) / 1e6:.1f} MB), "
          f"drawing the same {CHECK_DIGITS} digits and {CHECK_SCENES} scenes; use it with {FONT_DIRS_ENV}={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
