"""The generated blocks of the docs pages: real command output and benchmark figures.

Besides the parameter tables (``<!-- params:NAME:start -->``, see
``neurofilters.plugin_host.cli.docs``), a page may hold two kinds of block that
``docs/update_param_tables.py`` rewrites and ``tests/test_docs_generated.py``
checks:

* ``<!-- cli:start ARGS -->`` ... ``<!-- cli:end -->``: what ``neurofilters ARGS``
  prints (standard output, then standard error) and its exit status, in a
  ``text`` code block of class ``nf-output`` (which wraps long lines on the site). The command runs in a scratch folder holding
  ``photo.jpg`` (a 128 px sample photo), ``notes.txt`` (not an image) and
  ``photos/`` (two photos), so help texts, tables and error messages shown in
  the docs are the ones the command prints. It runs the real entry point
  (``plugin_host.cli.main.main``) in this process, 80 columns wide (the width of a code block on the site).
* ``<!-- bench:start -->`` ... ``<!-- bench:end -->``: the tables of
  ``bench/results.json``.

Hand-written because no mkdocs plugin runs a command at check time and fails a
test when its output in the page went stale.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "bench" / "results.json"
COLUMNS = 80

CLI_RE = re.compile(r"<!-- cli:start (?P<args>[^\n]*?) -->\n.*?<!-- cli:end -->", re.S)
BENCH_RE = re.compile(r"<!-- bench:start -->\n.*?<!-- bench:end -->", re.S)


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary working folder with the sample files the documented commands use."""
    import numpy as np
    from PIL import Image
    from skimage import data

    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="nf-docs-") as name:
        folder = Path(name)
        photo = Image.fromarray(data.astronaut()).resize((128, 128), Image.BICUBIC)
        photo.save(folder / "photo.jpg", quality=90)
        (folder / "notes.txt").write_text("not an image\n")
        (folder / "photos").mkdir()
        photo.save(folder / "photos" / "a.png")
        Image.fromarray(np.asarray(Image.fromarray(data.chelsea()).resize((128, 96)))).save(folder / "photos" / "b.png")
        os.chdir(folder)
        try:
            yield folder
        finally:
            os.chdir(previous)


def run_cli(args: str, folder: Path) -> str:
    """``neurofilters ARGS`` as the docs show it: the command line, its output and exit status."""
    from neurofilters.plugin_host.cli.main import main

    saved = {key: os.environ.get(key) for key in ("COLUMNS", "NO_COLOR", "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "KERAS_HOME")}
    # KERAS_HOME: an empty one, so 'models' shows a fresh machine's offline column wherever the docs are built.
    os.environ.update(COLUMNS=str(COLUMNS), NO_COLOR="1", NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD="1",
                      KERAS_HOME=str(folder / "keras-home"))
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(shlex.split(args))
            except SystemExit as exit_:  # argparse's --help and usage errors
                status = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    text = (out.getvalue() + err.getvalue()).replace(str(folder) + os.sep, "").replace(str(folder), ".")
    lines = [f"$ neurofilters {args}", *(line.rstrip() for line in text.rstrip("\n").splitlines())]
    if status:
        lines.append(f"[exit status {status}]")
    return "\n".join(lines)


def cli_block(args: str, output: str) -> str:
    """The Markdown of a command block."""
    return f"<!-- cli:start {args} -->\n```{{.text .nf-output}}\n{output}\n```\n<!-- cli:end -->"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def bench_markdown(results: dict) -> str:
    """The benchmark tables of ``bench/results.json`` (the sections it holds)."""
    parts = [
        f"Measured on {results.get('cpu', '?')} ({results.get('cpu_count', '?')} cores), TensorFlow "
        f"{results.get('tensorflow', '?')}; load average at the start "
        f"{', '.join(f'{x:.1f}' for x in results.get('load_average_start', []))}."
    ]
    if results.get("models"):
        rows = []
        for entry in results["models"]:
            rows.append([
                f"`{entry['model']}`, {entry.get('precision', '')}", str(entry.get("steps_per_octave", "")),
                f"{entry['ours_s_median']:.1f} s", f"{entry['reference_s_median']:.1f} s", f"**{entry['ratio']:.2f}**",
                f"{entry['ratio_equal_work']:.2f}" if "ratio_equal_work" in entry else "–",
                f"{100 * entry['peak_fraction_ours']:.0f} %" if "peak_fraction_ours" in entry else "–",
            ])
        parts.append("**DeepDream against the TF tutorial's loop** (same image, layers and steps; medians of "
                     f"{results['models'][0].get('rounds', '?')} rounds; ratio = ours / tutorial, lower is faster; "
                     "steps per octave; peak = numpy's float32 sgemm rate in the same rounds):")
        parts.append(_table(["model, precision", "steps", "ours", "tutorial", "ratio",
                             "ratio, equal work", "of peak"], rows))
        parts.append("Layers: " + "; ".join(
            f"`{entry['model']}`: " + ", ".join(f"`{x}`" for x in entry.get("layers", [])) for entry in results["models"]) + ".")
    if results.get("rss"):
        rows = [[entry["size"], f"`{entry['model']}`", f"{entry['peak_rss_gb']:.2f} GB", f"{entry['seconds']:.1f} s"]
                for entry in results["rss"]]
        parts.append("**Peak memory of one DeepDream run** (tiled; resident set of the process):")
        parts.append(_table(["image", "model", "peak RSS", "time"], rows))
    if results.get("rise"):
        rows = []
        for entry in results["rise"]:
            photos = ", ".join(f"{p['photo']} {p['size']}: {p['rise']:.1f}x" for p in entry.get("photos", []))
            rows.append([f"`{entry['model']}`", f"**{entry['median_rise']:.1f}x**", photos])
        parts.append("**How much the objective rises** with the default settings (final / initial):")
        parts.append(_table(["model", "median rise", "per photo"], rows))
    if results.get("texture"):
        parts += _texture_markdown(results["texture"])
    if results.get("speed"):
        parts += _speed_markdown(results["speed"])
    if results.get("speed_projection"):
        parts += _projection_markdown(results["speed_projection"])
    if results.get("banded"):
        parts += _banded_markdown(results["banded"])
    known = {"cpu", "cpu_count", "tensorflow", "load_average_start", "load_average_end", "models", "rss", "rise", "texture", "speed", "speed_projection", "banded"}
    for key in sorted(set(results) - known):
        parts.append(f"**{key}** (raw):\n\n```json\n{json.dumps(results[key], indent=1)[:2000]}\n```")
    return "\n\n".join(parts) + "\n"


def _banded_markdown(banded: dict) -> list[str]:
    """``bench/bench_banded.py``'s cases: seconds and the kernels oneDNN logged, ours (bands) against Keras' Conv2D."""
    rows = []
    for size in sorted({case["size"] for case in banded["cases"]}):
        cells = [f"{size}²"]
        for kind in ("banded", "plain"):
            case = next((c for c in banded["cases"] if c["size"] == size and c["kind"] == kind), None)
            if case is None or case.get("seconds") is None:
                cells.append(f"not finished in {case['timed_out_after']:.0f} s" if case else "–")
                continue
            forward = ", ".join(sorted({name.split()[0] for name in case.get("kernels", {}) if "forward" in name}))
            cells.append(f"{case['seconds']:.2f} s ({forward})")
        ratio = banded.get("ratio_ours_to_peer", {}).get(str(size))
        cells.append(f"**{ratio:.3g}**" if ratio is not None else "–")
        rows.append(cells)
    load = ", ".join(f"{x:.2f}" for x in banded.get("load_average", []))
    return [f"**One 128-channel 3 x 3 convolution, forward and input gradient, under the AVX2 cap** (`bench/bench_banded.py`; "
            f"{banded.get('cpu', '?')}; load average {load}; the forward kernels oneDNN logged, the untimed first call's included):",
            _table(["input", "ours: BandedConv2D", "peer: Keras Conv2D", "ratio"], rows)]


def _load(entry: dict) -> str:
    return f"{entry.get('load_average_start', ['?'])[0]} → {entry.get('load_average_end', ['?'])[0]}"


def _rate(value: float) -> str:
    """A learning rate in one significant digit, as ``1e5`` or ``3e4``."""
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e")


def _texture_markdown(texture: dict) -> list[str]:
    """The ``texture`` section of ``bench/results.json`` (``bench/bench_texture.py --save``) as tables."""
    parts = []
    styles = [entry for entry in texture.values() if entry.get("bench") == "style"]
    if styles:
        rows = []
        for entry in sorted(styles, key=lambda e: e["size"][0]):
            ours = entry.get("ours_seconds_to_reference_loss")
            rows.append([
                " x ".join(map(str, entry["size"])), str(entry["reference_steps"]), f"{entry['reference_seconds']:.1f} s",
                f"{entry['reference_final_loss']:.4g}", f"{ours:.1f} s ({entry['ours_evaluations']} evaluations)" if ours else "not reached",
                f"**{entry['ratio']:#.2g}**" if entry.get("ratio") is not None else "–", _load(entry),
            ])
        parts.append("**Style transfer against keras-io's algorithm** (`bench/bench_texture.py style`; same network, "
                     "layers, images and loss; ratio = ours to keras-io's final loss / keras-io's time, lower is faster; "
                     "1-minute load average at start → end):")
        parts.append(_table(["image", "keras-io steps", "keras-io", "its final loss", "ours to that loss", "ratio", "load"], rows))
    fair = [entry for entry in texture.values() if entry.get("bench") == "style-fair"]
    if fair:
        rows = []
        for entry in sorted(fair, key=lambda e: e["size"][0]):
            ours = entry.get("ours_seconds_to_reference_loss")
            grid = ", ".join(f"{_rate(try_['learning_rate'])}: " + ("diverged" if try_["diverged"] else f"{try_['final_loss']:.3g}")
                             for try_ in entry["lr_grid"])
            rows.append([
                " x ".join(map(str, entry["size"])), grid, f"**{_rate(entry['reference_learning_rate'])}**",
                f"{entry['reference_seconds']:.1f} s", f"{entry['start_loss_reference']:.4g} → {entry['reference_final_loss']:.4g}",
                f"{ours:.1f} s ({entry['ours_evaluations']} evaluations)" if ours else f"not reached (best {entry['ours_best_loss']:.4g})",
                f"**{entry['ratio']:#.2g}**" if entry.get("ratio") is not None else "–", _load(entry),
            ])
        parts.append("**Style transfer against keras-io's algorithm with its learning rate tuned** (`bench/bench_texture.py "
                     "style-fair`; as above, but the peer's learning rate is the best of a grid run in the same run, "
                     f"{fair[0]['grid_steps']} SGD steps per rate from the content, loss after them; then "
                     f"{fair[0]['reference_steps']} steps with keras-io's decay x0.96 every 100 steps):")
        parts.append(_table(["image", "learning rate: loss after the grid's steps", "chosen", "keras-io", "its loss, start → final",
                             "ours to that loss", "ratio", "load"], rows))
    peers = [entry for entry in texture.values() if str(entry.get("bench", "")).startswith("peers-")]
    if peers:
        rows = []
        for entry in sorted(peers, key=lambda e: (e["bench"], e["size"], e["isa_cap"])):
            peer, runs = entry["peer"], entry["ours"]
            default = entry.get("default", runs[0])  # entries saved before the default was run on its own
            best = min(runs, key=lambda run: run["loss"])
            reached = entry.get("ratio_to_peer_final_loss")
            at_default = entry.get("ratio_at_our_default_loss")
            finish = next((run for run in runs if run["loss"] <= peer["final_loss"]), None)
            setting = f", {entry['ours_setting']}" if entry.get("ours_setting") else ""
            along = entry.get("ratio_to_peer_final_loss_along_run")  # entries saved before the curve was read have none
            if along is not None and finish:
                setting += f"; along that run: **{along:#.2g}** ({finish['seconds_to_peer_final_loss']:.0f} s)"
            rows.append([
                "DeepTextures" if entry["bench"] == "peers-texture" else "neural-style", f"{entry['size']} px", entry["isa_cap"],
                entry.get("cpu", "?"), f"{peer['iterations']} iterations, {peer['seconds']:.0f} s → {peer['final_loss']:.3g}",
                f"**{reached:#.2g}**: {finish['steps']} iterations, {finish['seconds']:.0f} s → {finish['loss']:.3g}{setting}" if reached is not None and finish
                else f"not reached: {best['loss']:.3g} at best ({best['steps']} iterations, {best['seconds']:.0f} s{setting})",
                f"{default['steps']} iterations, {default['seconds']:.1f} s → {default['loss']:.3g}",
                f"{entry['peer_seconds_to_our_default_loss']:.1f} s" if entry.get("peer_seconds_to_our_default_loss") is not None else "not reached",
                f"**{at_default:#.2g}**" if at_default is not None else "–", _load(entry),
            ])
        parts.append("**Texture and style transfer against the classic L-BFGS recipes** (`bench/bench_peers.py`; one scale "
                     "from noise, the whole image differentiated at once, on the same network, layers and relative Gram loss "
                     "with zero padding; ours is the filter's schedule: its default at that size, and to the peer's final loss "
                     "the smallest --steps of a doubling series that reaches it (texture from 32, with every layer matched "
                     "at every octave, as --steps above 32 does; style from 8), and, where measured, the seconds until that "
                     "run's own loss curve first reached it, read as the peer's times are; ratios are ours / the peer's seconds, "
                     "lower is faster):")
        parts.append(_table(["recipe", "size", "ISA cap", "CPU (the peer's and ours, same run)", "the peer: its run → final loss", "ours to that loss, ratio",
                             "our default → its loss", "the peer to that loss", "ratio at our default's loss", "load"], rows))
    optimisers = [entry for entry in texture.values() if entry.get("bench") == "lbfgs"]
    if optimisers:
        rows = []
        for entry in sorted(optimisers, key=lambda e: (e["size"], e["isa_cap"])):
            for kind in ("texture", "style"):
                rows.append([
                    kind, f"{entry['size']} px", entry["isa_cap"], str(sum(1 for run in entry["runs"] if run["case"].startswith(kind)) // 2),
                    f"{entry[f'{kind}_scipy_seconds_mean']:.1f} s → {entry[f'{kind}_scipy_loss_mean']:.3g}",
                    f"{entry[f'{kind}_ours_seconds_mean']:.1f} s → {entry[f'{kind}_ours_loss_mean']:.3g}",
                    f"**{entry[f'{kind}_time_ratio']:.2f}**", _load(entry),
                ])
        parts.append("**The filters' L-BFGS against SciPy's L-BFGS-B** (`bench/bench_lbfgs.py`; each filter's default run with "
                     "either optimiser, alternating, the same seeds; texture: scikit-image's brick, seeds 0-2; style: chelsea in "
                     "coffee's style; seconds and the result's float32 loss over every default layer at the full size, means over the runs):")
        parts.append(_table(["filter", "size", "ISA cap", "runs each", "SciPy's L-BFGS-B", "ours", "time ratio", "load"], rows))
    synths = [entry for entry in texture.values() if entry.get("bench") == "synth"]
    if synths:
        rows = []
        for entry in sorted(synths, key=lambda e: (e["size"], e["steps_per_octave"])):
            final = entry["octaves"][-1] if entry.get("octaves") else {}
            reached = entry.get("seconds_to_target")
            rows.append([
                f"{entry['size']}²", str(entry["steps_per_octave"]), " → ".join(map(str, entry["octave_sides"])),
                f"{entry['tiles_final_octave']} × {entry['tile_size']} px, {entry['optimizer_final_octave']}",
                f"**{reached:.0f} s**" if reached is not None else f"not reached: {entry['best_loss_final_octave']:.3g} after {entry['seconds_total']:.0f} s",
                f"{final.get('first', [0])[0]:.0f} s" if final else "–", str(final.get("iterations", "–")),
                f"{entry['peak_rss_mb'] / 1024:.2f} GB", _load(entry),
            ])
        target = synths[0]["target_loss"]
        parts.append(f"**Texture synthesis to a fixed Gram loss** (`bench/bench_texture.py synth`; scikit-image's brick, "
                     f"relative Gram loss {target} in the final octave; steps per octave; when the final octave's first "
                     "iteration ended, and how many it ran; peak resident set of the process):")
        parts.append(_table(["size", "steps", "octaves", "final octave tiles, optimiser", "time to target",
                             "final octave's 1st iteration", "its iterations", "peak RSS", "load"], rows))
    return parts


_SPEED_COLUMNS = ("512", "1024", "preview")


def _speed_markdown(speed: dict) -> list[str]:
    """The ``speed`` section of ``bench/results.json`` (``bench/bench_speed.py --save``): issue 21's table per ISA."""
    parts = []
    cells, budgets = speed.get("cells", {}), speed.get("budgets", {})
    reference = speed.get("reference_sgemm_gflops")
    scaled_by = (f"scaled = the budget × {reference:g} GFLOP/s (the sgemm rate of the AVX2 CPU the budgets were set for) over the run's "
                 "mean rate; ") if reference else ""
    for isa, run in speed.get("runs", {}).items():
        rows = []
        for row, budget in budgets.items():
            marks = []
            for column, limit in zip(_SPEED_COLUMNS, budget):
                cell = cells.get(f"{isa}/{row}/{column}")
                if not cell:
                    marks.append(f"– / {limit:g} s")
                elif cell.get("seconds") is None:
                    marks.append(f"{cell.get('error', 'failed')[:40]} / {limit:g} s ✗")
                else:
                    scaled = cell.get("budget_scaled_s")
                    scaled_mark = f"; scaled {scaled:g} s {'✓' if cell['seconds'] <= scaled else '✗'}" if scaled is not None else ""
                    other_cpu = f"; {cell['cpu']}, {cell.get('date', '?')}" if cell.get("cpu", run.get("cpu")) != run.get("cpu") else ""
                    marks.append(f"{cell['seconds']:.1f} s / {limit:g} s {'✓' if cell['seconds'] <= limit else '✗'} "
                                 f"(load {cell.get('load_average_start', ['?'])[0]}, CPU {cell.get('cpu_seconds', '?')} s{scaled_mark}{other_cpu})")
            first = cells.get(f"{isa}/{row}/512", {})
            evaluations = f"{first['evaluations_full_size']:.1f}" if first.get("evaluations_full_size") is not None else "–"
            rows.append([row, *marks, evaluations])
        what = "the CPU capped at AVX2 (`ONEDNN_MAX_CPU_ISA=AVX2`)" if isa == "avx2" else "the CPU as it is"
        parts.append(f"**Default runs against issue 21's budgets, {what}** (`bench/bench_speed.py`; {run.get('cpu', '?')}, "
                     f"{run.get('cpu_count', '?')} cores; {_speed_runs(run, [cell for key, cell in cells.items() if key.startswith(isa + '/')])}; "
                     "seconds of the filter call after the model is loaded; "
                     f"{scaled_by if isa == 'avx2' else ''}"
                     "evaluations = input-gradient steps weighted by their pixels over the output's, at 512²):")
        parts.append(_table(["filter (defaults)", "512²", "1024²", "preview (256 px, warm)", "evaluations"], rows))
    return parts


def _projection_markdown(projections: dict) -> list[str]:
    """The ``speed_projection`` section (``bench/bench_projection.py --save``): cells projected onto the budgets' CPU."""
    rows = []
    for key, entry in projections.items():
        pairs = ", ".join(f"{pair['reference_s']:.1f} / {pair['today_s']:.1f}" for pair in entry["pairs"])
        rows.append([
            f"`{key}`", f"{entry['reference_commit'][:7]}: {entry['reference_s']:.2f} s on {entry['reference_cpu']}",
            f"{pairs} (load {entry['load_average_start'][0]} → {entry['load_average_end'][0]}, {entry['date']})",
            f"{entry['machine_factor']:.2f}x", f"{entry['today_over_reference']:.3f}",
            f"**{entry['projected_s']:.2f} s** / {entry['budget_s']:g} s {'✓' if entry['within_budget'] else '✗'}",
        ])
    cpus = sorted({entry["cpu"] for entry in projections.values()})
    return [
        f"**Cells projected onto the budgets' CPU by their own workload** (`bench/bench_projection.py`; {', '.join(cpus)}): the "
        "commit that measured the cell there is run here beside today's code, in alternating pairs under the same ISA cap; "
        "projected = its seconds there × the median of today's seconds over the reference's in each pair; "
        "machine factor = the reference's median seconds here over its seconds there:",
        _table(["cell", "reference: the cell on the budgets' CPU", "pairs here: reference / today (s)", "machine factor",
                "today / reference", "projected / budget"], rows),
    ]


def _speed_runs(run: dict, cells: list[dict]) -> str:
    """When and at what sgemm rate an ISA's cells were measured: the last run's header, or the span of the cells' own records.

    ``bench_speed --only`` re-measures some rows and replaces the header; each cell keeps its
    own date and rate (its scaled budget is computed from that rate).
    """
    dates = sorted({cell["date"] for cell in cells if cell.get("date")})
    rates = [cell["sgemm_gflops"] for cell in cells if cell.get("sgemm_gflops") is not None]
    if len(dates) > 1 and rates:
        return (f"cells measured {dates[0]} to {dates[-1]} in more than one run, numpy sgemm {min(rates):g} to "
                f"{max(rates):g} GFLOP/s (each cell's own run's rate)")
    return (f"{run.get('date', '?')}; numpy sgemm {run.get('sgemm_gflops_start', '?')} → {run.get('sgemm_gflops_end', '?')} GFLOP/s; "
            f"load average {run.get('load_average_start', ['?'])[0]} → {run.get('load_average_end', ['?'])[0]}")


def refresh_page(text: str, run: Callable[[str], str] | None = None, results: dict | None = None) -> str:
    """Rewrite the command and benchmark blocks of one page.

    Args:
        text: The page's Markdown.
        run: Gives a command's output block body for its ARGS (``run_cli`` in a
            scratch folder); None leaves command blocks as they are.
        results: ``bench/results.json``'s content; None reads the file.
    """
    if run is not None:
        text = CLI_RE.sub(lambda match: cli_block(match.group("args"), run(match.group("args"))), text)
    if BENCH_RE.search(text):
        data = results if results is not None else json.loads(RESULTS.read_text())
        text = BENCH_RE.sub(lambda _: f"<!-- bench:start -->\n{bench_markdown(data)}<!-- bench:end -->", text)
    return text


def refresh_all(write: bool, commands: bool = True) -> list[Path]:
    """Refresh every page's command (unless ``commands`` is false) and benchmark blocks.

    Returns:
        The pages that changed (written when ``write``).
    """
    pages = sorted(DOCS.rglob("*.md"))
    changed = []
    with scratch_folder() as folder:
        for page in pages:
            text = page.read_text()
            if not (CLI_RE.search(text) or BENCH_RE.search(text)):
                continue
            fresh = refresh_page(text, (lambda args: run_cli(args, folder)) if commands else None)
            if fresh != text:
                changed.append(page)
                if write:
                    page.write_text(fresh)
    return changed
