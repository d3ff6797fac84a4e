"""Reading frames from videos and numbered frame folders, and assembling output frames into a video with the source's audio.

PyAV (FFmpeg's libraries, carried in its wheels) decodes any container and
codec FFmpeg reads and encodes H.264 (MP4, MOV, MKV) or VP9 (WebM). The
audio stream is copied packet by packet, untouched, interleaved with the
video by time. Animated GIFs are written by Pillow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..core.errors import ImageIOError, ParameterError
from ..imageio.files import IMAGE_SUFFIXES, load_image

__all__ = ["VIDEO_SUFFIXES", "Source", "is_video_path", "open_source", "read_frames", "write_video"]

#: Output containers and their (FFmpeg format, video codec, pixel format).
VIDEO_SUFFIXES: dict[str, tuple[str, str, str]] = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".m4v": ("mp4", "libx264", "yuv420p"),
    ".mov": ("mov", "libx264", "yuv420p"),
    ".mkv": ("matroska", "libx264", "yuv420p"),
    ".webm": ("webm", "libvpx-vp9", "yuv420p"),
    ".gif": ("gif", "", ""),
}
#: Inputs recognised as videos by their suffix (batch's test; the video command opens whatever FFmpeg reads).
#: Not .gif: an animated GIF is an image to batch (``--all-frames``).
_INPUT_VIDEO_SUFFIXES = frozenset({*VIDEO_SUFFIXES, ".avi", ".mpg", ".mpeg", ".ts", ".m2ts", ".flv", ".wmv", ".ogv", ".3gp"}) - {".gif"}
_NUMBER = re.compile(r"(\d+)")


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video by its suffix (``.mp4``, ``.mov``, ``.webm`` ...)."""
    return Path(path).suffix.lower() in _INPUT_VIDEO_SUFFIXES


@dataclass
class Source:
    """A clip to filter: a video file or a folder of numbered frames, with the part chosen by ``start``/``end``."""

    path: Path
    kind: str  # "video" or "frames"
    width: int
    height: int
    rate: Fraction
    count: int
    start: float = 0.0
    end: float | None = None
    max_size: int | None = None
    frame_files: list[Path] = field(default_factory=list)
    has_audio: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """The frames' (width, height) as filtered (after ``max_size``)."""
        return _fitted(self.width, self.height, self.max_size)

    def frame_name(self, index: int) -> str:
        """The file name of output frame ``index`` (from 0) in a frames folder."""
        if self.kind == "frames":
            return f"{self.frame_files[index].stem}.png"
        return f"frame-{index + 1:06d}.png"


def _fitted(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    if not max_size or max(width, height) <= max_size:
        return width, height
    scale = max_size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _natural_key(path: Path) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in _NUMBER.split(path.name))


def _open_container(path: Path) -> Any:
    import av

    try:
        return av.open(os.fspath(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise ImageIOError(f"Cannot read '{path}' as a video ({error}). Give a video FFmpeg reads, or a folder of numbered frames.") from None


def open_source(
    path: str | os.PathLike[str],
    *,
    start: float = 0.0,
    end: float | None = None,
    max_size: int | None = None,
    fps: Fraction | None = None,
) -> Source:
    """Describe the clip at ``path`` without decoding it (frames are counted from packets).

    Args:
        path: A video file or a folder of numbered images.
        start: Seconds from the beginning where filtering starts.
        end: Seconds from the beginning where it ends (``None``: the end).
        max_size: Longest side of the filtered frames (frames are shrunk to it).
        fps: Frame rate of a frames folder (videos keep their own).

    Raises:
        ImageIOError: The path is neither a readable video nor a folder with images.
        ParameterError: ``start``/``end`` select no frame.
    """
    source_path = Path(path)
    if source_path.is_dir():
        files = sorted((p for p in source_path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                        and not p.name.startswith(".")), key=_natural_key)
        if not files:
            raise ImageIOError(f"No images in the folder '{source_path}'. Give a folder of numbered frames (frame-0001.png ...) or a video file.")
        rate = fps or Fraction(25)
        first_index = int(round(start * rate))
        last_index = len(files) if end is None else min(len(files), int(round(end * rate)))
        chosen = files[first_index:last_index]
        if not chosen:
            raise ParameterError(f'"start"/"end" select no frame of the {len(files)} in {source_path}. Received: start={start}, end={end}',
                                 param="start", value=start)
        first = load_image(chosen[0])
        return Source(source_path, "frames", first.width, first.height, rate, len(chosen), start, end, max_size, chosen)
    with _open_container(source_path) as container:
        if not container.streams.video:
            raise ImageIOError(f"'{source_path}' has no video stream. Give a video file or a folder of numbered frames.")
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25)
        width, height = stream.codec_context.width, stream.codec_context.height
        has_audio = bool(container.streams.audio)
        count = 0
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None and _in_range(float(packet.pts * stream.time_base), start, end, rate):
                count += 1
    if count == 0:
        raise ParameterError(f'"start"/"end" select no frame of {source_path}. Received: start={start}, end={end}', param="start", value=start)
    return Source(source_path, "video", width, height, rate, count, start, end, max_size, [], has_audio)


def _in_range(seconds: float, start: float, end: float | None, rate: Fraction) -> bool:
    half = 0.5 / float(rate)
    return seconds + half >= start and (end is None or seconds + half < end)


def _shrunk(array: Any, size: tuple[int, int]) -> Any:
    import numpy as np
    from PIL import Image

    if (array.shape[1], array.shape[0]) == size:
        return array
    image = Image.fromarray(np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8))
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS), np.float32) / 255.0


def read_frames(source: Source) -> Iterator[Any]:
    """float32 ``H x W x 3`` frames in [0, 1] of ``source``, in order, at ``source.size``."""
    import numpy as np

    if source.kind == "frames":
        for file in source.frame_files:
            loaded = load_image(file)
            pixels = loaded.pixels
            if pixels.shape[2] in (2, 4):  # composite alpha over black: a video has none
                pixels = pixels[:, :, :-1] * pixels[:, :, -1:]
            if pixels.shape[2] == 1:
                pixels = np.repeat(pixels, 3, axis=2)
            if (loaded.width, loaded.height) != (source.width, source.height):
                raise ImageIOError(f"Frame '{file}' is {loaded.width} x {loaded.height}; the first frame is "
                                   f"{source.width} x {source.height}. Every frame of a folder must have one size.")
            yield _shrunk(np.ascontiguousarray(pixels[:, :, :3], np.float32), source.size)
        return
    with _open_container(source.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            seconds = float(frame.time) if frame.time is not None else 0.0
            if not _in_range(seconds, source.start, source.end, source.rate):
                if source.end is not None and seconds >= source.end:
                    break
                continue
            yield _shrunk(frame.to_ndarray(format="rgb24").astype(np.float32) / 255.0, source.size)


def _audio_packets(source: Source) -> Iterator[tuple[Any, Any]]:
    """(packet, stream) of the source's first audio stream within ``start``/``end``, demuxed without decoding."""
    if source.kind != "video" or not source.has_audio:
        return
    with _open_container(source.path) as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            seconds = float(packet.pts * stream.time_base)
            if source.start and seconds < source.start - 1e-9:
                continue  # (from the beginning, even the encoder's priming packets at negative times are kept)
            if source.end is not None and seconds >= source.end:
                break
            yield packet, stream


def write_video(path: Path, frame_files: list[Path], source: Source, *, guard: Any, quality: int = 18) -> Path:
    """Encode ``frame_files`` (PNG, in order) into ``path`` atomically, at the source's rate, with its audio copied.

    Args:
        path: The output file; its suffix picks the container (:data:`VIDEO_SUFFIXES`).
        frame_files: The output frames, one per source frame.
        source: The clip they came from (rate, audio, ``start``).
        guard: The run's :class:`~..imageio.guard.WriteGuard` (the video is written through it, atomically).
        quality: x264/VP9 constant rate factor (lower is better; 18 is visually lossless for most clips).

    Returns:
        ``path``.
    """
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ParameterError(f"Unknown video format {suffix!r}. Received: -o {path}; use one of {', '.join(VIDEO_SUFFIXES)} or a folder.",
                             param="output", value=str(path))
    with guard.write(path, what="video") as temporary:
        if suffix == ".gif":
            _write_gif(temporary, frame_files, source)
        else:
            _write_av(temporary, suffix, frame_files, source, quality)
    return path


def _write_gif(temporary: Path, frame_files: list[Path], source: Source) -> None:
    from PIL import Image

    frames = []
    for file in frame_files:
        with Image.open(file) as image:
            frames.append(image.convert("RGB"))
    duration = max(20, round(1000 / float(source.rate)))
    frames[0].save(temporary, format="GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0, optimize=False)


def _write_av(temporary: Path, suffix: str, frame_files: list[Path], source: Source, quality: int) -> None:
    import av
    import numpy as np
    from PIL import Image

    container_format, codec, pixel_format = VIDEO_SUFFIXES[suffix]
    with Image.open(frame_files[0]) as first:
        width, height = first.size
    if (width % 2 or height % 2) and codec == "libx264":
        pixel_format = "yuv444p"  # 4:2:0 needs even sides; 4:4:4 keeps the size exactly
    audio = _audio_packets(source)
    pending = next(audio, None)
    with av.open(os.fspath(temporary), mode="w", format=container_format) as output:
        video = output.add_stream(codec, rate=source.rate)
        video.width, video.height, video.pix_fmt = width, height, pixel_format
        video.time_base = Fraction(1, 1) / source.rate
        video.options = {"crf": str(quality)} if codec == "libx264" else {"crf": str(quality + 13), "b": "0"}
        audio_out = output.add_stream_from_template(pending[1]) if pending is not None else None
        offset = None

        def flush_audio(until: float | None) -> None:
            nonlocal pending, offset
            while pending is not None:
                packet, stream = pending
                seconds = float(packet.pts * stream.time_base) - source.start
                if until is not None and seconds > until:
                    return
                if offset is None:
                    offset = int(round(source.start / stream.time_base)) if source.start else 0
                packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
                packet.stream = audio_out
                output.mux(packet)
                pending = next(audio, None)

        for index, file in enumerate(frame_files):
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB"))
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            for packet in video.encode(frame):
                output.mux(packet)
            flush_audio(index / float(source.rate))
        for packet in video.encode():
            output.mux(packet)
        flush_audio(None)
