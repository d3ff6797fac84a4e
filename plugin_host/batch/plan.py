"""Planning a batch: one task per output, with its name, seed and parameter hash,
and the safety checks (no output on an input, no two inputs on one output,
OUTDIR not inside the input tree).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ParameterError
from ..core.params import shorten
from .execute import Task
from .inputs import Discovery, InputFile, is_inside
from .journal import Journal, file_seed, params_hash
from .pipeline import Pipeline
from .template import OutputNameError, output_format, render_output

__all__ = ["PlanEntry", "Plan", "PlanSettings", "build_plan", "check_outdir", "frame_count"]

#: Bumped whenever what the hash covers changes, so older journals' outputs are redone.
HASH_VERSION = 2


@dataclass(frozen=True)
class PlanSettings:
    """The run-wide choices that shape the plan."""

    outdir: Path
    template: str
    fmt: str = "auto"
    quality: int = 95
    base_seed: int = 0
    all_frames: bool = False
    xcf_mode: str = "auto"  # auto | layers | flatten
    overwrite: bool = False
    xcf_masks: str = "keep"  # keep | apply (per-layer XCF: masks kept as masks, or applied to the filtered pixels)
    #: Other inputs the user named, as ``(role, path)``: image parameters, the --params and --pipeline files.
    named_inputs: tuple[tuple[str, str], ...] = ()


@dataclass
class PlanEntry:
    """One planned output: to do, skipped (already done) or failed before starting."""

    source: InputFile
    task: Task | None
    status: str  # "todo" | "skipped" | "failed"
    error: str = ""
    output: str = ""


@dataclass
class Plan:
    """Every entry of a batch, in order."""

    entries: list[PlanEntry] = field(default_factory=list)

    @property
    def todo(self) -> list[Task]:
        """Tasks still to run."""
        return [e.task for e in self.entries if e.status == "todo" and e.task is not None]


def check_outdir(outdir: Path, discovery: Discovery, *, allow_inside: bool) -> None:
    """Refuse an OUTDIR that is a scanned input folder or lies inside an input tree.

    A flat glob's folder (``*.png``) is refused itself, but a folder below it
    is fine: the pattern never reaches into it.

    Raises:
        ParameterError: With the folder and the way out (``--allow-outdir-inside``).
    """
    if allow_inside:
        return
    real_outdir = os.path.realpath(outdir)
    for root in discovery.roots + [r for r in discovery.flat_roots if os.path.realpath(r) == real_outdir]:
        if is_inside(outdir, root):
            raise ParameterError(
                f"OUTDIR is inside the input folder {root}. Received: -o {outdir}; choose an OUTDIR "
                "outside the inputs, or pass --allow-outdir-inside (OUTDIR is then never scanned).",
                param="output",
                value=str(outdir),
            )


def _collision_advice(first: InputFile, second: InputFile) -> str:
    """What to change when ``first`` and ``second`` would write the same output."""
    if first.relpath == second.relpath:  # e.g. two named files a/x.png and b/x.png: {relpath} is '.' for both
        return (f"both are {str(first.relpath)!r} in the folder they were found in, so {{relpath}} cannot tell them apart; "
                "add {index} to the template (e.g. --name '{relpath}/{stem}_{index}'), or pass one folder "
                "holding both with -r so their relative paths differ")
    if first.relpath.with_suffix("") == second.relpath.with_suffix(""):
        return "they differ only by suffix; add {ext} to the template (e.g. --name '{relpath}/{stem}_{ext}')"
    if first.relpath.parent != second.relpath.parent:
        return "they are in different folders; add {relpath} to the template"
    return "add {ext}, {relpath} or {index} to the template"


def frame_count(path: Path) -> int:
    """Number of frames of an animated image (1 when unknown or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return max(1, int(getattr(image, "n_frames", 1)))
    except Exception:  # unreadable files are reported when they are decoded
        return 1


def build_plan(discovery: Discovery, pipeline: Pipeline, settings: PlanSettings, journal: Journal | None) -> Plan:
    """Decide the output, seed and hash of every input, and what is already done.

    Raises:
        ParameterError: Two inputs would write the same output, or the template
            is unusable (nothing has been written yet).
    """
    plan = Plan()
    inputs = {os.path.realpath(f.path) for f in discovery.files}
    from ..imageio.guard import WriteGuard

    named = WriteGuard(settings.named_inputs)  # same file by real path or inode: symlinks and hard links too
    taken: dict[str, InputFile] = {}
    hashed = pipeline.hash_data()
    index = 0
    for source in discovery.files:
        suffix = source.path.suffix.lower()
        layered = suffix == ".xcf" and (
            settings.xcf_mode == "layers" or (settings.xcf_mode == "auto" and settings.fmt in ("auto", "ora", "xcf"))
        )
        fmt = output_format(settings.fmt, suffix, has_layers=layered)
        if layered and fmt not in ("ora", "xcf"):
            raise ParameterError(
                f"Per-layer XCF output needs a layered format. Received: --xcf layers with --format {settings.fmt}; "
                "use --format xcf, ora or auto, or --xcf flatten.",
                param="format",
                value=settings.fmt,
            )
        frames: Sequence[int] = range(frame_count(source.path)) if settings.all_frames and suffix in (".gif", ".webp", ".png", ".tif", ".tiff") else (0,)
        for frame in frames:
            key = str(source.relpath) + (f"#{frame}" if settings.all_frames and len(frames) > 1 else "")
            seed = file_seed(settings.base_seed, key)
            fields = {
                "stem": source.path.stem + (f"_f{frame:03d}" if len(frames) > 1 and "{frame" not in settings.template else ""),
                "ext": suffix.lstrip("."),
                "name": source.path.name,
                "relpath": source.reldir or ".",
                "filter": pipeline.name,
                "frame": frame,
                "index": index,
                "seed": seed,
            }
            try:
                output = render_output(settings.template, fields, settings.outdir, fmt)
            except OutputNameError as error:  # this file's name, not the template: only this entry fails
                plan.entries.append(PlanEntry(source, None, "failed", error=str(error)))
                index += 1
                continue
            real = os.path.realpath(output)
            if real in taken:
                raise ParameterError(
                    f"Two inputs would write the same output {output}: {taken[real].path} and {source.path}. "
                    f"Received: --name {shorten(repr(settings.template))}; {_collision_advice(taken[real], source)}",
                    param="name",
                    value=settings.template,
                )
            taken[real] = source
            digest = params_hash(
                {"v": HASH_VERSION, "pipeline": hashed, "seed": seed, "format": fmt, "quality": settings.quality,
                 "frame": frame, "layered": layered, **({"masks": "apply"} if layered and settings.xcf_masks == "apply" else {})}
            )
            task = Task(index, str(source.path), key, str(output), fmt, frame, seed, digest, layered,
                        masks=settings.xcf_masks if layered else "keep")
            entry = PlanEntry(source, task, "todo", output=str(output))
            role = named.input_role(output) if settings.named_inputs else None
            if real in inputs:
                entry.status, entry.error, entry.task = "failed", f"the output {output} is an input file; refusing to overwrite it", None
            elif role is not None:
                entry.status, entry.error, entry.task = "failed", f"the output {output} is {role}; refusing to overwrite it", None
            elif journal is not None and not settings.overwrite and journal.is_done(output, digest, source.path):
                entry.status = "skipped"
            elif output.exists() and not settings.overwrite and not (journal is not None and journal.owns(output)):
                entry.status, entry.task = "failed", None
                entry.error = f"{output} already exists and was not written by a batch run; pass --overwrite to replace it"
            plan.entries.append(entry)
            index += 1
    return plan
