"""Benchmark of ``neurofilters video``: flicker with and without coherence, change from the input, flow overhead.

A synthetic clip with a known motion (scikit-image's astronaut panned 2 px per frame and zoomed 0.2 % per
frame, 256 x 192, 25 fps, a 440 Hz tone) goes through a filter twice, with ``--coherence 0`` (independent
frames, the same seed) and with the default. Flicker is the mean absolute difference between output
frame t and output frame t-1 moved by the *true* motion, inside the part both frames see; change is the
mean absolute difference between each output frame and its input. The goal (issue "Dreams that move"):
flicker of the default <= 0.5x that of independent frames, change >= 0.8x. The flow overhead is the time of
flow + consistency + blend on a 1 MP frame against one DeepDream frame at its defaults (goal <= 10 %).

Usage: python bench/bench_video.py [--frames 48] [--filter deepdream] [--coherence 0.5 ...] [--no-overhead]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import machine  # noqa: E402
from video_clip import flicker_and_change, make_clip, read_frames  # noqa: E402


def run_video(clip: Path, out: Path, filter_name: str, coherence: float, extra: list[str]) -> float:
    began = time.monotonic()
    command = [sys.executable, "-m", "neurofilters.plugin_host", "video", os.fspath(clip), "-o", os.fspath(out), "--filter", filter_name,
               "--coherence", str(coherence), "-q", *extra]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.monotonic() - began


def flow_overhead() -> dict[str, float]:
    """Seconds of flow + consistency + blend on a 1 MP frame pair, and of one default DeepDream frame of 1 MP."""
    from skimage import data
    from PIL import Image

    import neurofilters
    from neurofilters.plugin_host.video.flow import FlowEstimator, blend, consistent

    photo = Image.fromarray(data.astronaut()).resize((1152, 864), Image.Resampling.BICUBIC)
    a = np.asarray(photo, np.float32) / 255.0
    b = np.roll(a, 3, axis=1)
    estimator = FlowEstimator()
    estimator.flows(a, b)
    began = time.monotonic()
    backward, forward = estimator.flows(a, b)
    blend(b, a, backward, consistent(backward, forward), 0.5)
    flow_seconds = time.monotonic() - began
    began = time.monotonic()
    neurofilters.apply("deepdream", b, seed=0)
    dream_seconds = time.monotonic() - began
    return {"flow_seconds": round(flow_seconds, 3), "dream_seconds": round(dream_seconds, 2), "ratio": round(flow_seconds / dream_seconds, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--filter", default="deepdream")
    parser.add_argument("--coherence", type=float, nargs="+", default=[0.5])
    parser.add_argument("--no-overhead", action="store_true")
    parser.add_argument("extra", nargs="*", help="filter flags after --, e.g. -- --steps 5")
    args = parser.parse_args()
    from neurofilters.plugin_host.video.media import open_source, read_frames as source_frames

    results: dict[str, object] = {"frames": args.frames, "filter": args.filter, "extra": args.extra, "cpu": machine.cpu(), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        make_clip(clip, args.frames)
        inputs = list(source_frames(open_source(clip)))
        rows = []
        for coherence in [0.0, *args.coherence]:
            out = Path(folder) / f"out-{coherence}.mp4"
            seconds = run_video(clip, out, args.filter, coherence, args.extra)
            flicker, change = flicker_and_change(read_frames(out.with_name(f"{out.stem}.frames")), inputs)
            rows.append({"coherence": coherence, "seconds": round(seconds, 1), "flicker": round(flicker, 5), "change": round(change, 5)})
        base = rows[0]
        for row in rows:
            row["flicker_ratio"] = round(row["flicker"] / base["flicker"], 3)
            row["change_ratio"] = round(row["change"] / base["change"], 3)
            print(f"coherence {row['coherence']:.2f}: flicker {row['flicker']:.4f} ({row['flicker_ratio']:.2f}x), "
                  f"change {row['change']:.4f} ({row['change_ratio']:.2f}x), {row['seconds']} s")
        results["rows"] = rows
    if not args.no_overhead:
        results["overhead_1mp"] = flow_overhead()
        print(f"flow + blend on 1 MP: {results['overhead_1mp']}")
    results["load_after"] = os.getloadavg()
    machine.save({"video": results})


if __name__ == "__main__":
    main()
