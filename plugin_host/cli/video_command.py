"""The ``neurofilters video`` subcommand: a video or a folder of frames through a filter, temporally coherent.

Its own options are declared once as :class:`Param` (:data:`VIDEO_PARAMS`), like a
filter's: the flags, their ``--help``, validation and the docs derive from them.
Exit codes: 0 done, 1 failure, 2 usage error (nothing written), 130 interrupted
(finished frames are kept; rerun the same command to continue).
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..core.params import Param

__all__ = ["DEFAULT_COHERENCE", "VIDEO_PARAMS", "add_video_parser", "run_video_command"]

#: The share of the previous output warped into each frame (input and result). Measured on the 48-frame panned and
#: zoomed test clip through DeepDream's defaults (bench/bench_video.py, 2-core AVX-512 EPYC): flicker 0.34x that of
#: independent frames, while each frame differs from its input 1.21x as much as an independent dream does.
DEFAULT_COHERENCE = 0.5

VIDEO_PARAMS: tuple[Param, ...] = (
    Param("coherence", "float", DEFAULT_COHERENCE, "Share of the previous output, warped along the optical flow, blended into each frame "
          "before filtering and into the filter's result (0 = every frame on its own, 1 = frozen along the motion; occluded "
          "pixels always come from the frame). Filters whose output is an analysis (saliency, activation maps) run frame by "
          "frame without blending.", minimum=0.0, maximum=1.0),
    Param("every", "int", 1, "Filter every Nth frame; the frames between follow the last filtered one along the flow.", minimum=1, maximum=1000),
    Param("start", "float", 0.0, "Where to start, in seconds from the beginning of the clip.", minimum=0.0, maximum=1e7),
    Param("end", "float", 0.0, "Where to stop, in seconds from the beginning (0 = the end of the clip).", minimum=0.0, maximum=1e7),
    Param("max_size", "int", 0, "Shrink frames so that their longer side is at most this many pixels (0 = keep the size).", minimum=0, maximum=16384),
    Param("fps", "float", 25.0, "Frame rate of a folder of frames (a video keeps its own).", minimum=0.1, maximum=1000.0),
    Param("loop", "int", 0, "An image input (a zoom dream, --frames N): add this many frames that cross-fade from the last frame "
          "back to the first, so the video loops.", minimum=0, maximum=10000),
    Param("quality", "int", 18, "Video quality as x264's constant rate factor: lower is better and larger (18 looks lossless; VP9 adds 13).",
          minimum=0, maximum=51),
)

_USAGE = "neurofilters video INPUT -o OUTPUT --filter NAME [--coherence C] [--PARAM VALUE ...]"


def add_video_parser(subparsers: Any) -> None:
    """Add the ``video`` subcommand to the CLI's subparsers."""
    from .args import metavar

    video = subparsers.add_parser(
        "video",
        add_help=False,
        allow_abbrev=False,
        help="apply a filter to a video or a folder of frames, frame by frame and coherent in time",
        usage=_USAGE,
        description="Filter every frame of INPUT (a video FFmpeg reads, or a folder of numbered frames) and write OUTPUT: "
        "a video (.mp4, .mov, .mkv, .webm, .gif: same frame rate, size and duration, audio copied unchanged) with its "
        "frames kept in OUTPUT's stem + '.frames/', or a folder of PNG frames. Each frame's input is blended with the "
        "previous output, warped along the optical flow, so dreams stay in place instead of flickering. Finished frames "
        "are journaled: rerunning the same command after an interruption continues and gives the same bytes.",
    )
    video.add_argument("input", nargs="?", metavar="INPUT", help="a video file or a folder of numbered frames")
    video.add_argument("-o", "--output", metavar="OUTPUT", help="a video file (.mp4 .mov .mkv .webm .gif) or a folder for the frames")
    video.add_argument("--filter", dest="filter_name", metavar="NAME", help="filter name (see 'neurofilters list')")
    video.add_argument("--seed", default="0", help="seed of the filter's randomness, the same for every frame (default 0)")
    options = video.add_argument_group("video options")
    for param in VIDEO_PARAMS:
        options.add_argument(param.flag, dest=f"video_{param.name}", default=None, metavar=metavar(param.kind),
                             help=f"{param.help} Allowed: {param.allowed()}. Default: {param.default}.")
    video.add_argument("--overwrite", action="store_true", help="redo every frame and replace an existing output")
    video.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    video.add_argument("-h", "--help", action="store_true", help="show this help (with --filter NAME: also its parameters)")
    video.set_defaults(video_parser=video)


def run_video_command(args: argparse.Namespace, extra: list[str], registry: Any) -> int:
    """Run ``neurofilters video`` with parsed ``args``; ``extra`` holds the filter's ``--PARAM VALUE`` pairs.

    Raises:
        UsageError, ParameterError, RegistryError: Usage problems (exit 2 in the CLI).
    """
    from ..core.errors import ParameterError, UsageError
    from ..core.params import parse_seed, validate_params
    from ..imageio.files import IMAGE_SUFFIXES
    from ..imageio.values import load_image_params
    from ..video.media import VIDEO_SUFFIXES, open_source
    from ..video.run import VideoJob, run_video
    from .args import PROG, flag_error, option_names, parse_filter_flags, print_help_with_filter

    parser: argparse.ArgumentParser = args.video_parser
    spec = registry.get_filter(args.filter_name) if args.filter_name else None
    if args.help:
        print_help_with_filter(parser, spec, f"{PROG} video --filter {spec.name}" if spec is not None else None)
        return 0
    if spec is None or args.input is None or args.output is None:
        raise UsageError(f"'video' needs INPUT, -o OUTPUT and --filter NAME; usage: {_USAGE}")
    command = f"{PROG} video --filter {spec.name}"
    given = {param.name: getattr(args, f"video_{param.name}") for param in VIDEO_PARAMS if getattr(args, f"video_{param.name}") is not None}
    flags = parse_filter_flags(spec, extra, prog=command, host_flags=option_names(parser))
    try:
        options = validate_params(VIDEO_PARAMS, given)
        seed = parse_seed(args.seed)
    except ParameterError as error:
        raise flag_error(error, VIDEO_PARAMS, f"{PROG} video") from None
    try:
        values = validate_params(spec.params, flags)
    except ParameterError as error:
        raise flag_error(error, spec.params, command) from None
    if options["end"] and options["end"] <= options["start"]:
        raise UsageError(f"--end must be after --start. Received: --start {options['start']} --end {options['end']}")
    source_path = Path(args.input)
    if not source_path.exists():
        raise ParameterError(f"Input not found. Received: {args.input}; give a video file or a folder of frames.", param="input", value=args.input)
    output = Path(args.output).expanduser().absolute()
    is_video = output.suffix.lower() in VIDEO_SUFFIXES
    if (not is_video and output.suffix.lower() in IMAGE_SUFFIXES) or (not is_video and output.is_file()):
        raise UsageError(f"-o must be a video ({', '.join(VIDEO_SUFFIXES)}) or a folder for the frames. Received: -o {args.output}")
    if is_video and output.is_dir():
        raise UsageError(f"-o names a folder with a video suffix; give a video file. Received: -o {args.output}")
    from ..imageio.guard import guard_for_paths, param_inputs

    guard = guard_for_paths(("the input", source_path), *param_inputs(spec.params, values), overwrite=args.overwrite)
    try:
        loaded = load_image_params(spec.params, values)
    except ParameterError as error:
        raise flag_error(error, spec.params, command) from None
    if source_path.is_file() and source_path.suffix.lower() in IMAGE_SUFFIXES:
        return _zoom_video(spec, values, loaded, seed, source_path, output, options, guard, args)
    source = open_source(source_path, start=options["start"], end=options["end"] or None,
                         max_size=options["max_size"] or None, fps=Fraction(options["fps"]).limit_denominator(1001))
    job = VideoJob(spec=spec, values=loaded, shown=dict(values), seed=seed, coherence=float(options["coherence"]),
                   every=int(options["every"]), source=source, output=output, guard=guard)
    from .progress import ProgressBar

    bar = None if args.quiet else ProgressBar(f"video {spec.name}", status=f"reading {source_path.name}…")
    try:
        result = run_video(job, progress=bar, quality=int(options["quality"]))
    finally:
        if bar is not None:
            bar.close()
    width, height = source.size
    done = f"{result.computed} filtered, {result.skipped} done before" if result.skipped else f"{result.computed} filtered"
    print(f"video: {result.frames} frames of {width} x {height} at {float(source.rate):g} fps ({done}) in {result.frames_dir}",
          file=sys.stderr)
    if result.video is not None:
        print(f"wrote {result.video}")
    return 0


def _zoom_video(spec: Any, values: Any, loaded: Any, seed: int, image_path: Path, output: Path, options: Any,
                guard: Any, args: argparse.Namespace) -> int:
    """An image input: the filter's own frame sequence (DeepDream's ``--frames`` zoom) as a video or a frames folder."""
    from ..core.errors import UsageError
    from ..front import run
    from ..imageio.files import load_image
    from ..video.media import Source, write_video
    from ..video.run import frames_folder
    from .progress import ProgressBar

    if not int(values.get("frames", 0) or 0):
        raise UsageError(f"An image input needs a filter that makes frames and --frames N (e.g. --filter deepdream --frames 60). "
                         f"Received: {image_path} with --filter {spec.name}; for a clip, give a video or a folder of frames.")
    folder = frames_folder(output)
    count = int(values["frames"]) + int(options["loop"])
    names = [f"frame-{index + 1:06d}.png" for index in range(count)]
    guard.check_all([("frame", folder / name) for name in names] + ([("video", output)] if output.suffix else []))
    guard.mkdir(folder, what="frames folder")
    image = load_image(image_path)
    written: list[Path] = []

    def keep(name: str, pixels: Any) -> None:
        if not name.startswith("frame-"):
            return  # another kind of extra output: not part of the clip
        written.append(guard.save_image(folder / names[len(written)], pixels[:, :, :3], what="frame", bit_depth=8))

    bar = None if args.quiet else ProgressBar(f"video {spec.name}", status=f"reading {image_path.name}…")
    try:
        run(spec, image, loaded, seed=seed, progress=bar, emit=keep)
    finally:
        if bar is not None:
            bar.close()
    _loop_back(written, names, folder, int(options["loop"]), guard)
    rate = Fraction(options["fps"]).limit_denominator(1001)
    if output.suffix:
        source = Source(image_path, "frames", image.width, image.height, rate, len(written), frame_files=written)
        write_video(output, written, source, guard=guard, quality=int(options["quality"]))
        print(f"wrote {output}")
    print(f"video: {len(written)} frames at {float(rate):g} fps in {folder}", file=sys.stderr)
    return 0


def _loop_back(written: list[Path], names: list[str], folder: Path, loop: int, guard: Any) -> None:
    """Append ``loop`` frames cross-fading from the last frame to the first (``written`` grows)."""
    import numpy as np

    from ..imageio.files import load_image

    if not loop:
        return
    first, last = load_image(written[0]).pixels[:, :, :3], load_image(written[-1]).pixels[:, :, :3]
    for step in range(1, loop + 1):
        share = step / (loop + 1)
        written.append(guard.save_image(folder / names[len(written)], (1.0 - share) * last + share * first, what="frame", bit_depth=8))
