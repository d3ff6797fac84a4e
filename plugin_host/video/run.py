"""The frame loop: each frame through the filter (blended with the previous output along the flow), journaled, resumable.

Coherence: the previous output frame, warped into the current one along the optical flow between the
source frames, is blended into the filter's input by ``coherence`` and into its output by the same share,
wherever the forward-backward check trusts the flow (occluded pixels come from the frame alone).

Output frames are PNG files written atomically into a frames folder and
recorded in a journal (one JSON line per frame, with its SHA-256). A rerun of
the same command skips the journaled frames and continues; because every frame
is filtered from the *written* (8-bit) previous frame, a resumed run gives the
same bytes as an uninterrupted one. The video is assembled from the frames at
the end, atomically, and again on every rerun.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.context import ModelCache
from ..core.errors import UsageError
from ..core.specs import FilterSpec
from ..front import run as run_filter
from ..imageio.guard import WriteGuard
from .media import VIDEO_SUFFIXES, Source, read_frames, write_video

__all__ = ["JOURNAL_NAME", "VideoJob", "VideoResult", "frames_folder", "run_video"]

#: The journal inside the frames folder.
JOURNAL_NAME = ".neurofilters-video.jsonl"
_FORMAT_VERSION = 1


def frames_folder(output: Path) -> Path:
    """Where the output frames go: ``OUT.frames/`` beside a video output, or the output folder itself."""
    if output.suffix.lower() in VIDEO_SUFFIXES:
        return output.with_name(f"{output.stem}.frames")
    return output


@dataclass
class VideoJob:
    """Everything one ``video`` run needs, validated.

    Attributes:
        spec: The filter.
        values: Loaded :class:`~..core.params.ParamValues` (:func:`~..imageio.values.load_image_params`).
        shown: The values as the user gave them (for the fingerprint), image parameters as paths.
        seed: The filter's seed, the same for every frame (so a dream stays put).
        coherence: 0..1, the share of the previous output warped into each frame.
        every: Filter every Nth frame; the frames between follow the last filtered one along the flow.
        source: The clip.
        output: A video file or a folder for the frames.
        guard: The run's write guard: it knows the input and every file named as a parameter (never written)
            and whether ``--overwrite`` was given (to replace files neurofilters did not write).
    """

    spec: FilterSpec
    values: Mapping[str, Any]
    shown: Mapping[str, Any]
    seed: int
    coherence: float
    every: int
    source: Source
    output: Path
    guard: WriteGuard = field(default_factory=WriteGuard)

    @property
    def blends(self) -> bool:
        """Whether outputs are carried along the flow (filters whose output replaces the picture)."""
        return self.spec.output == "image" and (self.coherence > 0 or self.every > 1)

    def fingerprint(self) -> str:
        """A digest of everything that decides the frames' bytes."""
        import numpy as np

        digest = hashlib.sha256()
        stat = os.stat(self.source.path)
        header = {
            "version": _FORMAT_VERSION, "filter": self.spec.name, "values": {k: str(v) for k, v in sorted(self.shown.items())},
            "seed": self.seed, "coherence": self.coherence, "every": self.every,
            "source": [os.path.realpath(self.source.path), stat.st_size, stat.st_mtime_ns, self.source.start,
                       self.source.end, self.source.max_size, self.source.count],
        }
        digest.update(json.dumps(header, sort_keys=True).encode())
        for name in sorted(self.values):
            value = self.values[name]
            if isinstance(value, np.ndarray):
                digest.update(name.encode() + np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()


@dataclass
class VideoResult:
    """What a run did."""

    frames: int
    computed: int
    skipped: int
    frames_dir: Path
    video: Path | None
    seconds: float
    flow_seconds: float = 0.0
    filter_seconds: float = 0.0


class _Journal:
    """Finished frames: ``{"frame": i, "file": name, "sha256": ...}`` lines after a fingerprint header line."""

    def __init__(self, folder: Path, fingerprint: str, guard: WriteGuard) -> None:
        self.path = folder / JOURNAL_NAME
        self.fingerprint = fingerprint
        self.guard = guard
        self.done: dict[int, dict[str, Any]] = {}
        self.video_sha: str | None = None
        lines = self._read()
        if lines and lines[0].get("fingerprint") != fingerprint:
            if not guard.overwrite:
                raise UsageError(
                    f"'{folder}' holds frames of a run with other settings (filter, values, seed, coherence or source). "
                    "Use another -o, or --overwrite to redo every frame."
                )
            lines = []
        self.fresh = not lines
        for entry in lines[1:]:
            if "frame" in entry:
                self.done[int(entry["frame"])] = entry
            elif "video" in entry:
                self.video_sha = entry["sha256"]

    def _read(self) -> list[dict[str, Any]]:
        self.valid_bytes = 0
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        entries = []
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # a line cut by a kill: never confirmed
            try:
                entries.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                break
            self.valid_bytes += len(line)
        return entries

    def begin(self) -> None:
        """Create the folder and the journal (a new run), or cut a line a kill left half-written (a resumed one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.fresh:
            if self.path.stat().st_size != self.valid_bytes:
                os.truncate(self.path, self.valid_bytes)
            return
        self.fresh = False
        self.guard.write_text(self.path, json.dumps({"fingerprint": self.fingerprint}) + "\n", what="journal")

    def record(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(entry, sort_keys=True) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        if "frame" in entry:
            self.done[int(entry["frame"])] = entry
        else:
            self.video_sha = entry["sha256"]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _quantised(pixels: Any) -> Any:
    """The frame as written (8 bits), back in float32: what the next frame blends with, resumed or not."""
    import numpy as np

    return (np.clip(np.rint(np.asarray(pixels)[:, :, :3] * 255.0), 0, 255).astype(np.uint8).astype(np.float32) / 255.0)


def run_video(job: VideoJob, *, progress: Callable[[float, str], None] | None = None,
              models: ModelCache | None = None, quality: int = 18) -> VideoResult:
    """Filter every frame of ``job.source`` into ``job.output`` (see the module docstring).

    Args:
        job: What to do.
        progress: ``callback(fraction, message)`` over the whole clip.
        models: A model cache to reuse (default: a new one, shared by every frame).
        quality: The video's constant rate factor (:func:`~.media.write_video`).

    Raises:
        UsageError: The frames folder holds another run's frames, or a file this run did not write would be replaced.
        ImageIOError: A frame or the video cannot be read or written.
    """
    import numpy as np

    from .flow import FlowEstimator, blend, consistent

    began = time.monotonic()
    guard = job.guard
    folder = frames_folder(job.output)
    for frame_file in job.source.frame_files:
        guard.protect(frame_file, "a frame of the input")
    video = job.output if job.output.suffix.lower() in VIDEO_SUFFIXES else None
    names = [job.source.frame_name(i) for i in range(job.source.count)]
    journal = _Journal(folder, job.fingerprint(), guard)
    journaled = {entry["file"] for entry in journal.done.values()}
    # Before any work: no frame, journal or video of this run may replace an input or a file neurofilters did not
    # write (frames this run journaled are its own, even when the ledger has forgotten them).
    # The frame after the last journaled one may have been written by the killed run just before its journal line.
    in_flight = {names[len(journal.done)]} if not journal.fresh and len(journal.done) < len(names) else set()
    guard.check_all([("frame", folder / name) for name in names if name not in journaled | in_flight])
    guard.check_all(([("journal", journal.path)] if journal.fresh else []) + ([("video", video)] if video is not None else []))
    guard.mkdir(folder, what="frames folder")
    journal.begin()

    # Frames up to the first one missing (or changed on disk) are kept; everything after it is redone in order.
    resume = 0
    while resume < len(names) and resume in journal.done and (folder / names[resume]).is_file() \
            and _sha256(folder / names[resume]) == journal.done[resume]["sha256"]:
        resume += 1
    models = models if models is not None else ModelCache()
    estimator = FlowEstimator() if job.blends else None
    total = job.source.count
    flow_seconds = filter_seconds = 0.0
    previous_source = previous_output = None
    computed = 0

    decoded = 0
    for index, frame in enumerate(read_frames(job.source)):
        if index >= total:
            break
        decoded = index + 1
        target = folder / names[index]
        if index < resume:
            if job.blends and index == resume - 1:
                previous_output = _quantised(np.asarray(_load_png(target)))
            previous_source = frame if job.blends else None
            continue
        filter_input = frame
        keyframe = index % job.every == 0
        if job.blends and previous_output is not None:
            clock = time.monotonic()
            backward, forward = estimator.flows(previous_source, frame)
            mask = consistent(backward, forward)
            filter_input = blend(frame, previous_output, backward, mask, job.coherence if keyframe else 1.0)
            flow_seconds += time.monotonic() - clock
        if keyframe or previous_output is None:
            clock = time.monotonic()

            def frame_progress(fraction: float, message: str, _index: int = index) -> None:
                if progress is not None:
                    progress((_index + min(max(fraction, 0.0), 1.0)) / total, f"frame {_index + 1}/{total} {message}".rstrip())

            result = run_filter(job.spec, filter_input, job.values, seed=job.seed, progress=frame_progress, models=models)
            filter_seconds += time.monotonic() - clock
            if job.blends and previous_output is not None:
                # ... and into its output by the same share: input blending alone left 0.62x the flicker of
                # independent frames on the benchmark clip, both together 0.34x (bench/bench_video.py).
                clock = time.monotonic()
                result = blend(np.asarray(result)[:, :, :3], previous_output, backward, mask, job.coherence)
                flow_seconds += time.monotonic() - clock
        else:
            result = filter_input
        if target.name in journaled | in_flight and target.exists():
            guard.record(target)  # this run's own frame (journaled, or cut off by a kill), about to be redone
        guard.save_image(target, np.asarray(result)[:, :, :3], what="frame", bit_depth=8)
        journal.record({"frame": index, "file": target.name, "sha256": _sha256(target)})
        previous_output = _quantised(result) if job.blends else None
        previous_source = frame if job.blends else None
        computed += 1
        if progress is not None:
            progress((index + 1) / total, f"frame {index + 1}/{total}")

    if decoded < total:  # the container counted more packets than its decoder gave frames: the video has those frames
        names, total = names[:decoded], decoded
    if video is not None:
        if progress is not None:
            progress(1.0, f"writing {video.name}")
        write_video(video, [folder / name for name in names], job.source, guard=guard, quality=quality)
        journal.record({"video": video.name, "sha256": _sha256(video)})
    return VideoResult(total, computed, total - computed, folder, video, time.monotonic() - began, flow_seconds, filter_seconds)


def _load_png(path: Path) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), np.float32) / 255.0
