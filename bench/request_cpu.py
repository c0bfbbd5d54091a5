"""Where a request's CPU goes: each step of reading ``bench/serve.py``'s photo, in this process.

The serving bench's 640x480 JPEG of a "7" goes through the steps a worker runs for it (decode,
letterbox, localiser input, localiser forward, decoding its maps, the SVHN square, the classifier's
input and forward, the PNG of what it saw), each timed on its own, and then the whole request
(``decode_upload``, ``Reader.read``, ``png_data_url``) at once; one thread, CPU time of this
thread, median of ``--repeats`` calls after a warm-up. The whole is the figure to compare between
commits (run this at each, back to back); the steps say where it goes. Flask, HTTP and the
micro-batchers are not in it: ``bench/serve.py`` measures those with everything else.

    python bench/request_cpu.py [--repeats 300] [--width 640] [--checkpoint ...] [--localiser ...] [--backend onnx]

``--width 4032`` times the same photo as a 12-megapixel phone camera's JPEG, which is decoded at a
reduced scale (``model.preprocess.WORKING_SIDE``); the full-scale decode is timed beside it.
Last, the whole request for the same photo with a small 7 (font 60 instead of 300 px at 640, about
40 px tall), which takes the localiser's finer look and second look, with and without the finer look.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from app.imaging import decode_upload, open_image, png_data_url  # noqa: E402
from app.modelfile import ensure_onnx  # noqa: E402
from bench.serve import sample_jpeg  # noqa: E402
from model.inference import BACKENDS, DEFAULT_BACKEND, load_reader  # noqa: E402
from model.localiser import decode, letterbox, normalize_input  # noqa: E402
from model.preprocess import normalize, to_rgb  # noqa: E402
from model.reading import frame_views  # noqa: E402


def cpu_ms(call: Callable[[], object], repeats: int) -> float:
    """Median CPU time of this thread per ``call()``, in ms, after a few warm-up calls."""
    for _ in range(min(20, repeats)):
        call()
    times = []
    for _ in range(repeats):
        start = time.thread_time_ns()
        call()
        times.append(time.thread_time_ns() - start)
    return float(np.median(times)) / 1e6


def full_scale(data: bytes):
    """The upload decoded as ``decode_upload`` does, but at full scale (what it did before 2026-11-30)."""
    image = open_image(data)
    image.load()
    return to_rgb(image)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "default.pt"))
    p.add_argument("--localiser", default=str(REPO / "checkpoints" / "localiser.pt"))
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--width", type=int, default=640, help="the photo's width (its height is 3/4 of it)")
    args = p.parse_args()
    if args.backend != "torch":
        ensure_onnx(args.checkpoint, args.backend)
        ensure_onnx(args.localiser, args.backend)
    reader = load_reader(args.checkpoint, args.localiser, args.backend, threads=1)
    data = sample_jpeg(args.width)
    picture = decode_upload(data).picture
    letterboxed, frame = letterbox(picture, reader.locator_size)
    x = normalize_input(letterboxed[None])
    maps = reader.locate(x)[0]
    main_box = reader.find(picture)[0].box
    view = frame_views(picture, main_box, reader.input_size, reader.views[:1])[0]
    batch = normalize(view, reader.mean, reader.std)[None]
    reading = reader.read(picture)
    steps = {
        "JPEG decode (decode_upload)": lambda: decode_upload(data),
        "  the same at full scale (not served)": lambda: full_scale(data),
        "letterbox to the localiser's input": lambda: letterbox(picture, reader.locator_size),
        "localiser input standardised": lambda: normalize_input(letterboxed[None]),
        "localiser forward (batch 1)": lambda: reader.locate(x),
        "its maps decoded into boxes": lambda: decode(maps, frame, picture.size, reader.threshold),
        "the SVHN square cut and resized (one view)": lambda: frame_views(picture, main_box, reader.input_size,
                                                                          reader.views[:1]),
        "classifier input standardised": lambda: normalize(view, reader.mean, reader.std),
        "classifier forward (batch 1)": lambda: reader.classify(batch),
        "PNG of what the network saw": lambda: png_data_url(reading.seen),
    }
    print(f"{len(data) / 1000:.1f} KB JPEG, {args.width}x{args.width * 3 // 4} decoded at {picture.size[0]}x{picture.size[1]}: read {reading.digit} "
          f"({reading.confidence:.3f}), box {reading.box} (decoded pixels), {reading.views} view(s); backend {args.backend}, "
          f"1 thread, median CPU ms of {args.repeats}")
    total = 0.0
    for name, call in steps.items():
        ms = cpu_ms(call, args.repeats)
        total += ms if not name.startswith(" ") else 0.0
        print(f"  {name:44} {ms:6.3f}")
    print(f"  {'sum of the steps':44} {total:6.3f}")
    whole = cpu_ms(lambda: png_data_url(reader.read(decode_upload(data).picture).seen), args.repeats)
    print(f"  {'whole (decode_upload + Reader.read + PNG)':44} {whole:6.3f}")
    if picture.size[0] != args.width:
        before = cpu_ms(lambda: png_data_url(reader.read(full_scale(data)).seen), args.repeats)
        print(f"  {'whole, decoded at full scale (not served)':44} {before:6.3f}")
    small = sample_jpeg(args.width, font_px=60)
    no_finer = copy.copy(reader)
    no_finer.finer_size = None
    for name, r in (("whole, a small 7 (finer and second look)", reader), ("  the same without the finer look", no_finer)):
        reading = r.read(decode_upload(small).picture)
        ms = cpu_ms(lambda: png_data_url(r.read(decode_upload(small).picture).seen), args.repeats)
        print(f"  {name:44} {ms:6.3f}   (read {reading.digit}, box {reading.box}, {reading.views} view(s))")


if __name__ == "__main__":
    main()
