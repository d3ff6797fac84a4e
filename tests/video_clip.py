"""A synthetic clip with a known motion, for the video tests and bench/bench_video.py.

scikit-image's astronaut, panned 2 px per frame and zoomed 0.2 % per frame, 25 fps, with a 440 Hz tone
(H.264 + AAC in MP4); :func:`true_backward` gives the exact motion between frames, so flicker can be
measured against the truth rather than against an estimated flow.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["HEIGHT", "RATE", "WIDTH", "crop_box", "flicker_and_change", "make_clip", "read_frames", "true_backward"]

WIDTH, HEIGHT, RATE = 256, 192, 25


def crop_box(t: int) -> tuple[int, int, int, int]:
    """The astronaut photo's box shown in frame ``t``: 2 px/frame to the right, 0.2 %/frame closer."""
    zoom = 1.0 + 0.002 * t
    x0, y0 = 60 + 2 * t, 100
    return x0, y0, x0 + int(WIDTH * 1.2 / zoom), y0 + int(HEIGHT * 1.2 / zoom)


def make_clip(path: Path, frames: int, width: int = WIDTH, height: int = HEIGHT) -> None:
    """Write the synthetic clip (H.264 + AAC in MP4)."""
    import av
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    with av.open(os.fspath(path), "w") as container:
        video = container.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt, video.options = width, height, "yuv420p", {"crf": "12"}
        audio = container.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for t in range(frames):
            x0, y0, x1, y1 = crop_box(t)
            scale = width / WIDTH
            box = (x0, y0, x0 + int((x1 - x0) * scale), y0 + int((y1 - y0) * scale))
            frame = av.VideoFrame.from_ndarray(np.asarray(photo.crop(box).resize((width, height), Image.Resampling.BICUBIC)), format="rgb24")
            frame.pts = t
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        rate = 44100
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * frames // RATE) / rate)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = rate, start
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)


def true_backward(t: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The exact flow from frame ``t`` into frame ``t - 1`` (pixel centres), from the crop boxes."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = crop_box(t), crop_box(t - 1)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    sx, sy = (ax1 - ax0) / WIDTH, (ay1 - ay0) / HEIGHT
    px, py = (bx1 - bx0) / WIDTH, (by1 - by0) / HEIGHT
    photo_x = ax0 + (u + 0.5) * sx * WIDTH / width
    photo_y = ay0 + (v + 0.5) * sy * HEIGHT / height
    prev_u = (photo_x - bx0) / (px * WIDTH / width) - 0.5
    prev_v = (photo_y - by0) / (py * HEIGHT / height) - 0.5
    return np.stack([prev_u - u, prev_v - v], axis=2).astype(np.float32)


def read_frames(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    frames = []
    for path in sorted(folder.glob("frame-*.png")):
        with Image.open(path) as image:
            frames.append(np.asarray(image.convert("RGB"), np.float32) / 255.0)
    return frames


def flicker_and_change(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> tuple[float, float]:
    """Mean |out_t - out_{t-1} moved by the true motion| in the shared view, and mean |out_t - in_t|."""
    from neurofilters.plugin_host.video.flow import warp

    flicker = []
    for t in range(1, len(outputs)):
        height, width = outputs[t].shape[:2]
        flow = true_backward(t, width, height)
        u, v = np.meshgrid(np.arange(width), np.arange(height))
        inside = (u + flow[:, :, 0] >= 1) & (u + flow[:, :, 0] <= width - 2) & (v + flow[:, :, 1] >= 1) & (v + flow[:, :, 1] <= height - 2)
        moved = warp(outputs[t - 1], flow)
        flicker.append(float(np.abs(outputs[t] - moved)[inside].mean()))
    change = [float(np.abs(o - i).mean()) for o, i in zip(outputs, inputs)]
    return float(np.mean(flicker)), float(np.mean(change))
