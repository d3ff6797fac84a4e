"""The ``neurofilters batch`` subcommand: argparse wiring and the command itself.

Exit codes: 0 every output is done (written now or skipped as already done),
1 at least one file failed (the others were processed), 2 usage error
(nothing was written), 130 interrupted (what finished is kept; rerun to resume).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..batch.template import DEFAULT_TEMPLATE, FORMAT_SUFFIXES, TEMPLATE_FIELDS

__all__ = ["add_batch_parser", "run_batch_command", "EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_SOME_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: ``--batch-size`` default: 48 photos of 128 x 128 through deepdream took 0.60-0.66 of the
#: one-by-one wall time at 4 and 0.54-0.65 at 8 (bench/bench_batch.py --batch-sizes; docs/batch.md).
DEFAULT_BATCH_SIZE = 4

_USAGE = "neurofilters batch INPUT... -o OUTDIR (--filter NAME [--PARAM VALUE ...] | --pipeline FILE) [options]"


def add_batch_parser(subparsers: Any) -> None:
    """Add the ``batch`` subcommand to the CLI's subparsers."""
    batch = subparsers.add_parser(
        "batch",
        add_help=False,
        allow_abbrev=False,
        help="apply a filter (or a pipeline) to many images",
        usage=_USAGE,
        description="Filter files, folders and glob patterns into OUTDIR. Inputs are never overwritten; "
        "outputs are written atomically; rerunning the same command skips finished files. "
        "Exit codes: 0 all done, 1 some files failed, 2 usage error, 130 interrupted.",
    )
    batch.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or quoted glob patterns ('photos/**/*.jpg')")
    batch.add_argument("-o", "--output", dest="outdir", metavar="OUTDIR", help="output folder (created if missing)")
    what = batch.add_argument_group("what to apply")
    what.add_argument("--filter", dest="filter_name", metavar="NAME", help="filter name (see 'neurofilters list')")
    what.add_argument("--pipeline", metavar="FILE", help="TOML/YAML/JSON file chaining filters (see docs/batch.md)")
    what.add_argument("--params", metavar="FILE", help="TOML/YAML/JSON file of the filter's parameters (flags override it)")
    what.add_argument("--seed", default=None, help="base seed; each file's seed derives from it and its relative path (default 0)")
    sel = batch.add_argument_group("input selection")
    sel.add_argument("-r", "--recursive", action="store_true", help="descend into sub-folders; the tree is kept under OUTDIR")
    sel.add_argument("--include", action="append", default=[], metavar="PATTERN", help="only files whose name or relative path matches (repeatable)")
    sel.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="skip files whose name or relative path matches (repeatable)")
    sel.add_argument("--all-frames", action="store_true", help="filter every frame of animated images (default: first frame only)")
    sel.add_argument("--max-pixels", default=None, metavar="N", help="largest image accepted, in pixels; 0 = no limit (default: Pillow's decompression-bomb limit, ~89 million)")
    sel.add_argument("--xcf", choices=("auto", "layers", "flatten"), default="auto",
                     help="XCF inputs: filter each layer (written as a layered .xcf, or .ora with --format ora), "
                     "or the flattened image (auto: layers unless --format is a flat format)")
    sel.add_argument("--xcf-masks", choices=("keep", "apply"), default="keep",
                     help="per-layer XCF: keep layer masks as masks (default), or apply them to the filtered layers' alpha")
    out = batch.add_argument_group("outputs")
    out.add_argument("--name", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
                     help=f"output name template under OUTDIR (default {DEFAULT_TEMPLATE!r}); fields: "
                     + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS) + "; the format's suffix is added")
    out.add_argument("--format", default="auto", metavar="FORMAT",
                     help="auto (same as the input where it can hold the result, else png), " + ", ".join(FORMAT_SUFFIXES))
    out.add_argument("--quality", default="95", metavar="Q", help="JPEG/WebP quality 1-100 (default 95)")
    out.add_argument("--overwrite", action="store_true", help="redo finished outputs and replace existing files")
    out.add_argument("--allow-outdir-inside", action="store_true", help="accept an OUTDIR inside an input folder (it is never scanned)")
    out.add_argument("--report", metavar="FILE.json", help="write a JSON report (per file: input, output, status, error, seconds, params hash)")
    run = batch.add_argument_group("running")
    run.add_argument("-n", "--dry-run", action="store_true", help="list what would be done and write nothing")
    run.add_argument("-j", "--jobs", default="1", metavar="N", help="worker processes (default 1: one process, prefetching threads)")
    run.add_argument("--prefetch", default="2", metavar="N", help="images decoded ahead of the filter (default 2)")
    run.add_argument("--batch-size", default=str(DEFAULT_BATCH_SIZE), metavar="N",
                     help=f"filter up to N consecutive images of equal size in one call, for filters that can "
                     f"(deepdream); outputs are identical to one by one; 1 = one by one (default {DEFAULT_BATCH_SIZE}; "
                     "--engine ray always runs one by one)")
    run.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local (this machine) or ray (actors on a Ray cluster; needs 'pip install neurofilters[ray]')")
    run.add_argument("--address", default=None, metavar="ADDR",
                     help="Ray cluster address for --engine ray (default: start a local Ray instance)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    batch.add_argument("-h", "--help", action="store_true", help="show this help (with --filter NAME: also its parameters)")
    batch.set_defaults(batch_parser=batch)


def _usage(message: str) -> Exception:
    from ..core.errors import UsageError

    return UsageError(message)


def _int(value: str | None, name: str, minimum: int, maximum: int | None = None) -> int | None:
    from ..core.params import parse_int

    if value is None:
        return None
    return parse_int(value, "--" + name.replace("_", "-"), minimum, maximum)  # control characters, 5,000 digits: one line


def _named_inputs(args: argparse.Namespace, pipeline: Any) -> tuple[tuple[str, str], ...]:
    """Every file besides the inputs that the user named: the --params and --pipeline files, image parameters, model files."""
    from ..imageio.guard import param_inputs

    named: list[tuple[str, str]] = []
    for flag in ("params", "pipeline"):
        value = getattr(args, flag, None)
        if value:
            named.append((f"the --{flag} file", os.fspath(Path(value).expanduser())))
    for step in pipeline.steps:
        named.extend(param_inputs(step.spec.params, step.values))
    return tuple(named)


def _report_guard(args: argparse.Namespace, discovery: Any, plan: Any, named_inputs: tuple[tuple[str, str], ...]) -> Any:
    """The guarded writer for ``--report`` (checked now, before any work), or ``None`` without ``--report``.

    The report never replaces an input, a file named as an input, or an output of this batch.
    """
    if not args.report:
        return None
    from ..imageio.guard import WriteGuard

    guard = WriteGuard(
        [*(("an input of this batch", f.path) for f in discovery.files), *named_inputs,
         *(("an output of this batch", entry.output) for entry in plan.entries if entry.output)],
        overwrite=bool(args.overwrite),
    )
    guard.check(Path(args.report).expanduser(), what="report (--report)")
    return guard


def _check_outdir_writable(outdir: Path, typed: str) -> None:
    """Refuse an OUTDIR that cannot be made or written (a file in its path, a read-only folder), naming the culprit."""
    existing = outdir
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise _usage(f"OUTDIR cannot be created: {_printable(str(existing))} is a file, not a folder. "
                     f"Received: -o {_printable(typed)}; fix the path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _usage(f"OUTDIR cannot be written: {_printable(str(existing))} is read-only for you. "
                     f"Received: -o {_printable(typed)}; choose a folder you can write to, or fix its permissions.")
    too_long = [part for part in outdir.parts if len(os.fsencode(part)) > 255]
    if too_long:
        raise _usage(f"OUTDIR has a name of {len(os.fsencode(too_long[0]))} bytes; file systems allow 255. "
                     f"Received: -o {_printable(typed)[:200]}; choose a shorter name.")


def _printable(text: str) -> str:
    """``text`` with the undecodable bytes of non-UTF-8 file names shown as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_batch_command(args: argparse.Namespace, extra: list[str], registry: Any) -> int:
    """Run ``neurofilters batch`` with parsed ``args``; ``extra`` holds ``--PARAM VALUE`` pairs.

    Returns:
        The exit code (see the module docstring).

    Raises:
        UsageError, ParameterError, RegistryError: Usage problems (exit 2 in the CLI).
    """
    from ..batch.inputs import discover_inputs
    from ..batch.journal import Journal, lock_outdir
    from ..batch.pipeline import load_pipeline, single_step
    from ..batch.plan import PlanSettings, build_plan, check_outdir
    from ..batch.run import report_rows, write_report
    from ..batch.template import check_template
    from ..core.errors import ParameterError
    from ..core.params import parse_seed, validate_params
    from .args import PROG, flag_error, option_names, parse_filter_flags, print_help_with_filter

    parser: argparse.ArgumentParser = args.batch_parser
    spec = registry.get_filter(args.filter_name) if args.filter_name else None
    if args.help:
        print_help_with_filter(parser, spec)
        return EXIT_OK
    if spec is not None and args.pipeline:
        raise _usage("give either --filter or --pipeline, not both")
    if spec is None and not args.pipeline:
        raise _usage(f"'batch' needs --filter NAME or --pipeline FILE; usage: {_USAGE}")
    if not args.inputs or not args.outdir:
        raise _usage(f"'batch' needs INPUT... and -o OUTDIR; usage: {_USAGE}")
    if spec is None and (extra or args.params):
        raise _usage(f"filter parameters ({' '.join(extra) or '--params'}) go into the pipeline file with --pipeline")
    if spec is not None:
        command = f"{PROG} batch --filter {spec.name}"
        flags = parse_filter_flags(spec, extra, prog=command, host_flags=option_names(parser))
        try:
            # The flags alone first, so errors name them as typed (a --params file may still give a required image).
            validate_params(spec.params, flags, check_required=args.params is None)
        except ParameterError as error:
            raise flag_error(error, spec.params, command) from None
        pipeline = single_step(spec, flags, params_file=args.params)
    else:
        pipeline = load_pipeline(args.pipeline, registry.get_filter)
    try:
        seed = parse_seed(args.seed) if args.seed is not None else (pipeline.seed or 0)
    except ParameterError as error:
        raise flag_error(error, (), f"{PROG} batch") from None
    quality = _int(args.quality, "quality", 1, 100)
    jobs = _int(args.jobs, "jobs", 1, 256)
    prefetch = _int(args.prefetch, "prefetch", 1, 64)
    batch_size = _int(args.batch_size, "batch_size", 1, 256)
    max_pixels = _int(args.max_pixels, "max_pixels", 0)
    check_template(args.name)
    if args.address and args.engine != "ray":
        raise _usage(f"--address is for --engine ray. Received: --address {args.address} with --engine {args.engine}")
    if args.engine == "ray" and not args.dry_run:
        from ..batch.ray_engine import ray_available

        if not ray_available():
            raise _usage("--engine ray needs Ray, which is not installed; run \"pip install 'neurofilters[ray]'\" or use --engine local")

    outdir = Path(args.outdir).expanduser().absolute()
    if outdir.exists() and not outdir.is_dir():
        raise _usage(f"OUTDIR must be a folder. Received: -o {args.outdir} (an existing file)")
    _check_outdir_writable(outdir, args.outdir)
    video_code = None
    videos = _named_videos(args.inputs)
    if videos:
        if len(pipeline.steps) != 1:
            raise _usage(f"videos in a batch take one --filter; a --pipeline runs on images. Received: {_printable(videos[0])} with --pipeline")
        video_code = _run_videos(videos, pipeline.steps[0], seed or 0, outdir, args)
        args.inputs = [word for word in args.inputs if word not in videos]
        if not args.inputs:
            return video_code
    discovery = discover_inputs(args.inputs, recursive=args.recursive, include=args.include, exclude=args.exclude, skip_dirs=[outdir])
    check_outdir(outdir, discovery, allow_inside=args.allow_outdir_inside)
    for path, reason in discovery.unreadable:
        print(_printable(f"batch: warning: skipped {path}: {reason}"), file=sys.stderr)
    named_inputs = _named_inputs(args, pipeline)
    settings = PlanSettings(outdir, args.name, args.format, quality or 95, seed or 0, args.all_frames, args.xcf, args.overwrite,
                            args.xcf_masks, named_inputs=named_inputs)
    journal = Journal(outdir)
    plan = build_plan(discovery, pipeline, settings, journal)
    report_guard = _report_guard(args, discovery, plan, named_inputs)  # refuses a bad --report before any work
    header = {
        "version": 1,
        "pipeline": pipeline.describe(),
        "pipeline_name": pipeline.name,
        "seed": seed or 0,
        "outdir": str(outdir),
        "dry_run": bool(args.dry_run),
    }
    if args.dry_run:
        for entry in plan.entries:
            label = {"todo": "would write", "skipped": "done already", "failed": "cannot"}[entry.status]
            note = f" ({entry.error})" if entry.error else ""
            print(_printable(f"{label}: {entry.source.path} -> {entry.output or '-'}{note}"))
        todo = len(plan.todo)
        print(f"batch (dry run): {len(plan.entries)} outputs, {todo} to do, "
              f"{sum(e.status == 'skipped' for e in plan.entries)} done already, {discovery.ignored} files ignored")
        if args.report:
            write_report(Path(args.report), header, report_rows(plan, None), report_guard)
        return EXIT_OK
    if not plan.entries:
        print("batch: no input files found (folders are scanned for image suffixes; see --include)", file=sys.stderr)
        return EXIT_OK
    lock = lock_outdir(outdir)
    try:
        code = _execute(args, plan, pipeline, discovery, journal, header, quality, max_pixels, jobs, prefetch, batch_size,
                        named_inputs, report_guard)
    finally:
        lock.close()
    return code if video_code is None else max(code, video_code)


def _named_videos(inputs: list[str]) -> list[str]:
    """The inputs that name video files (by suffix): they go through the video command's frame loop."""
    from ..video.media import is_video_path

    return [word for word in inputs if is_video_path(word) and os.path.isfile(word)]


def _run_videos(videos: list[str], step: Any, seed: int, outdir: Path, args: argparse.Namespace) -> int:
    """Each named video through ``step`` as ``neurofilters video`` does (default coherence), into OUTDIR; 1 if one failed.

    The output keeps the video's container (``OUTDIR/STEM.SUFFIX``; MP4 for containers it cannot write), its
    frames go to ``OUTDIR/STEM.frames/``, and its seed derives from the run's seed and the file name, as an
    image's does. A failed video is reported and the others go on, as with images.
    """
    from ..core.call import derive_seed
    from ..core.errors import NeurofiltersError
    from ..imageio.guard import guard_for_paths, param_inputs
    from ..imageio.values import load_image_params
    from ..video.media import VIDEO_SUFFIXES, open_source
    from ..video.run import VideoJob, run_video
    from .progress import ProgressBar
    from .video_command import DEFAULT_COHERENCE

    loaded = load_image_params(step.spec.params, step.values)  # ParamValues: the names the user gave kept
    failed = 0
    for path in videos:
        source_path = Path(path)
        suffix = source_path.suffix.lower() if source_path.suffix.lower() in VIDEO_SUFFIXES else ".mp4"
        output = outdir / f"{source_path.stem}{suffix}"
        if args.dry_run:
            print(_printable(f"would write: {path} -> {output} (a video: every frame through {step.spec.name})"))
            continue
        guard = guard_for_paths(("the input", source_path), *param_inputs(step.spec.params, step.values), overwrite=args.overwrite)
        bar = None if args.quiet else ProgressBar(f"batch {step.spec.name} {source_path.name}")
        try:
            job = VideoJob(step.spec, loaded, dict(step.values), derive_seed(seed, source_path.name), DEFAULT_COHERENCE, 1,
                           open_source(source_path), output, guard)
            result = run_video(job, progress=bar)
        except NeurofiltersError as error:
            failed += 1
            print(_printable(f"batch: failed: {path}: {error}"), file=sys.stderr)
            continue
        finally:
            if bar is not None:
                bar.close()
        print(_printable(f"batch: {path} -> {result.video} ({result.frames} frames, {result.computed} filtered)"), file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _execute(
    args: argparse.Namespace,
    plan: Any,
    pipeline: Any,
    discovery: Any,
    journal: Any,
    header: dict[str, Any],
    quality: int | None,
    max_pixels: int | None,
    jobs: int | None,
    prefetch: int | None,
    batch_size: int | None,
    named_inputs: tuple[tuple[str, str], ...] = (),
    report_guard: Any = None,
) -> int:
    """Run the planned batch (OUTDIR locked), print the summary, write the report; return the exit code."""
    from ..batch.execute import RunOptions, cleanup_temporaries
    from ..batch.run import report_rows, run_plan, summary_text, write_report

    cleanup_temporaries(Path(entry.output).parent for entry in plan.entries if entry.output)
    options = RunOptions(
        steps=tuple((step.spec.name, step.values) for step in pipeline.steps),
        quality=quality or 95,
        max_pixels=max_pixels,
        protect=(*(os.fspath(f.path) for f in discovery.files), *(path for _, path in named_inputs)),
        overwrite=bool(args.overwrite),
    )
    from .progress import ProgressBar

    bar = None if args.quiet else ProgressBar(f"batch {pipeline.name}")
    try:
        result = run_plan(plan, options, journal, jobs=jobs or 1, prefetch=prefetch or 2, progress=bar,
                          engine=args.engine, address=args.address, batch_size=batch_size or 1)
    finally:
        if bar is not None:
            bar.close()
    rows = report_rows(plan, result)
    header["wall_seconds"] = round(result.wall_seconds, 3)
    header["compute_seconds"] = round(result.compute_seconds, 3)
    header["interrupted"] = result.interrupted
    if args.report:
        write_report(Path(args.report), header, rows, report_guard)
    summary_text(rows, result.wall_seconds, stream=sys.stderr)
    if discovery.ignored:
        print(f"batch: {discovery.ignored} files in the input folders were ignored (not image suffixes, or "
              "filtered by --include/--exclude)", file=sys.stderr)
    if result.interrupted:
        print("batch: interrupted; run the same command again to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if any(row["status"] == "failed" for row in rows) else EXIT_OK
