"""The command output and benchmark figures shown in the docs are what the command prints now."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))

import generated  # noqa: E402  (docs/generated.py)

from neurofilters.plugin_host import build_registry  # noqa: E402
from neurofilters.plugin_host.cli.main import build_parser  # noqa: E402


def _pages() -> list[Path]:
    return sorted(page for page in DOCS.rglob("*.md") if "examples" not in page.parts)


@pytest.mark.slow
def test_every_command_block_shows_what_the_command_prints_now() -> None:
    """Reruns every ``<!-- cli:start ARGS -->`` block (help, tables, error messages) and compares."""
    stale = []
    seen = 0
    with generated.scratch_folder() as folder:
        for page in _pages():
            text = page.read_text()
            seen += len(generated.CLI_RE.findall(text))
            for match in generated.CLI_RE.finditer(text):
                fresh = generated.cli_block(match.group("args"), generated.run_cli(match.group("args"), folder))
                if fresh != match.group(0):
                    stale.append(f"{page.name}: neurofilters {match.group('args')}\n--- page\n{match.group(0)}\n--- now\n{fresh}")
    assert seen >= 20, f"only {seen} command blocks found: did the marker change?"
    assert not stale, "stale command output (run 'python docs/update_param_tables.py'):\n" + "\n\n".join(stale)


def test_every_command_has_its_help_in_the_reference() -> None:
    """Iterates the parser, so a command a plugin adds later needs its block too."""
    parser = build_parser(build_registry(autoload=False))
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices
    reference = (DOCS / "cli.md").read_text()
    shown = set(re.findall(r"<!-- cli:start (\S+) --help -->", reference))
    assert "--help" in re.findall(r"<!-- cli:start (\S+) -->", reference)
    assert set(commands) - shown == set(), f"commands without their --help in docs/cli.md: {set(commands) - shown}"


def test_troubleshooting_shows_real_failures() -> None:
    """The troubleshooting page's blocks are failures (exit 1 or 2), each naming what it received."""
    text = (DOCS / "troubleshooting.md").read_text()
    blocks = [match.group(0) for match in generated.CLI_RE.finditer(text)]
    assert len(blocks) >= 10
    for block in blocks:
        assert re.search(r"\[exit status [12]\]", block), block
        assert "neurofilters: error:" in block, block


def test_run_cli_reports_the_exit_status_and_cuts_the_scratch_folder() -> None:
    with generated.scratch_folder() as folder:
        failed = generated.run_cli("run deepdream missing.jpg -o out.png", folder)
        listed = generated.run_cli("list", folder)
    assert failed.splitlines()[0] == "$ neurofilters run deepdream missing.jpg -o out.png"
    assert failed.endswith("[exit status 2]") and "missing.jpg" in failed and str(folder) not in failed
    assert "deepdream" in listed and "exit status" not in listed


def test_benchmark_block_is_rendered_from_results_json() -> None:
    text = (DOCS / "performance.md").read_text()
    results = json.loads(generated.RESULTS.read_text())
    assert generated.refresh_page(text, results=results) == text, "performance.md is stale: run docs/update_param_tables.py"
    for entry in results["models"]:
        assert f"**{entry['ratio']:.2f}**" in text
    changed = json.loads(json.dumps(results))
    changed["models"][0]["ratio"] = 9.87
    assert "**9.87**" in generated.refresh_page(text, results=changed)


def test_the_gallery_commands_reproduce_the_gallery_settings() -> None:
    """The command each gallery section shows, parsed by the CLI, gives the values the script used."""
    import shlex

    import make_gallery  # docs/make_gallery.py

    from neurofilters.plugin_host.cli.args import parse_filter_flags
    from neurofilters.plugin_host.core.params import validate_params

    rows = [(spec, None) for spec in build_registry(autoload=False).filters.values()]
    rows += [(spec, extra) for spec, _ in list(rows) for _, extra, _ in make_gallery.VARIANTS.get(spec.name, [])]
    for spec, extra in rows:
        values, flags = make_gallery.settings(spec, 32, extra)
        images = {param.name for param in spec.params if param.kind == "image"}
        typed = parse_filter_flags(spec, shlex.split(flags))
        from_cli = validate_params(spec.params, {k: v for k, v in typed.items() if k not in images}, check_files=False, check_required=False)
        from_script = validate_params(spec.params, {k: v for k, v in values.items() if k not in images}, check_files=False, check_required=False)
        assert dict(from_cli) == dict(from_script), spec.name


def test_the_speed_table_says_when_its_cells_were_measured() -> None:
    """One run: its date and sgemm rates; cells from several runs (``--only``): the span of their own dates and rates."""
    run = {"cpu": "a CPU", "cpu_count": 2, "date": "2026-12-07 20:09 UTC", "sgemm_gflops_start": 145.1, "sgemm_gflops_end": 163.4,
           "load_average_start": [1.1], "load_average_end": [1.5]}
    cell = {"row": "hallucinate", "seconds": 26.3, "budget_scaled_s": 24.4, "cpu": "a CPU", "date": "2026-12-07 20:09 UTC", "sgemm_gflops": 154.2}
    older = {**cell, "row": "texture", "seconds": 50.0, "budget_scaled_s": 57.8, "date": "2026-12-07 17:58 UTC", "sgemm_gflops": 146.4}
    speed = {"budgets": {"hallucinate": [20, 40, 3], "texture": [45, 150, 3]}, "reference_sgemm_gflops": 188,
             "runs": {"avx2": run}, "cells": {"avx2/hallucinate/512": cell}}
    header = generated._speed_markdown(speed)[0]
    assert "2026-12-07 20:09 UTC; numpy sgemm 145.1 → 163.4 GFLOP/s" in header
    speed["cells"]["avx2/texture/512"] = older
    parts = generated._speed_markdown(speed)
    assert "cells measured 2026-12-07 17:58 UTC to 2026-12-07 20:09 UTC in more than one run, numpy sgemm 146.4 to 154.2 GFLOP/s" in parts[0]
    assert "145.1" not in parts[0]
    assert "26.3 s / 20 s ✗" in parts[1] and "scaled 24.4 s ✗" in parts[1] and "50.0 s / 45 s ✗" in parts[1] and "scaled 57.8 s ✓" in parts[1]


def test_projected_cells_show_the_reference_the_pairs_and_the_verdict() -> None:
    entry = {"reference_commit": "9522c97fa4298dd677f46e8dde2d0bceff054fee", "reference_s": 11.55, "reference_cpu": "AMD EPYC",
             "pairs": [{"reference_s": 26.7, "today_s": 22.6}, {"reference_s": 27.7, "today_s": 24.3}], "machine_factor": 2.36,
             "today_over_reference": 0.862, "projected_s": 9.96, "budget_s": 20, "within_budget": True, "cpu": "a Xeon",
             "load_average_start": [1.0], "load_average_end": [1.3], "date": "2026-12-07 22:50 UTC"}
    text = "\n".join(generated._projection_markdown({"avx2/hallucinate/512": entry}))
    assert "`avx2/hallucinate/512` | 9522c97: 11.55 s on AMD EPYC | 26.7 / 22.6, 27.7 / 24.3 (load 1.0 → 1.3" in text
    assert "| 2.36x | 0.862 | **9.96 s** / 20 s ✓ |" in text
    missed = generated._projection_markdown({"avx2/hallucinate/512": {**entry, "projected_s": 21.0, "within_budget": False}})
    assert "**21.00 s** / 20 s ✗" in missed[1]
    assert "speed_projection" not in generated.bench_markdown({"speed_projection": {"avx2/hallucinate/512": entry}})  # not dumped raw
