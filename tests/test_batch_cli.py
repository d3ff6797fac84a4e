"""``neurofilters batch`` end to end through the real command (fresh interpreters, real files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_batch_support import install_test_plugin, run_batch, tree_bytes, write_photo


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_test_plugin(tmp_path_factory.mktemp("batch-site"))


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write_photo(root / "a.jpg", seed=1)
    write_photo(root / "b.png", seed=2, mode="RGBA")
    write_photo(root / "trip" / "c.jpg", seed=3)
    write_photo(root / "trip" / "day2" / "d.png", seed=4)
    (root / "trip" / "notes.txt").write_text("not an image")
    return root


def test_recursive_keeps_tree_report_and_resume(site: Path, photos: Path, tmp_path: Path) -> None:
    before = tree_bytes(photos)
    out, report = tmp_path / "out", tmp_path / "report.json"
    done = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-noise", "-r", "--report", str(report), "--strength", "0.25")
    assert done.returncode == 0, done.stderr
    assert sorted(tree_bytes(out)) == ["a.jpg", "b.png", "trip/c.jpg", "trip/day2/d.png"]
    assert tree_bytes(photos) == before  # inputs untouched
    assert "4 done" in done.stderr
    data = json.loads(report.read_text())
    assert data["counts"] == {"ok": 4}
    row = data["files"][0]
    assert set(row) >= {"input", "output", "status", "error", "seconds", "params_hash"}
    assert row["status"] == "ok" and row["error"] is None and len(row["params_hash"]) == 16
    with Image.open(out / "b.png") as image:
        assert image.mode == "RGBA" and image.size == (24, 16)

    first = tree_bytes(out)
    again = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-noise", "-r", "--report", str(report), "--strength", "0.25")
    assert again.returncode == 0 and "4 skipped" in again.stderr
    assert json.loads(report.read_text())["counts"] == {"skipped": 4}
    assert tree_bytes(out) == first

    changed = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-noise", "-r", "--strength", "0.5")
    assert changed.returncode == 0 and "4 done" in changed.stderr  # new parameters: redone
    assert tree_bytes(out)["a.jpg"] != first["a.jpg"]
    forced = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-noise", "-r", "--strength", "0.5", "--overwrite")
    assert forced.returncode == 0 and "4 done" in forced.stderr


def test_non_recursive_include_exclude_template_format(site: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    flat = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-invert", "--format", "png",
                     "--name", "{filter}/{stem}-{ext}")
    assert flat.returncode == 0, flat.stderr
    assert sorted(tree_bytes(out)) == ["bt-invert/a-jpg.png", "bt-invert/b-png.png"]
    out2 = tmp_path / "out2"
    picked = run_batch(site, str(photos / "**" / "*.*"), "-o", str(out2), "--filter", "bt-invert",
                       "--include", "*.png", "--exclude", "trip/day2/*", "--name", "{relpath}/x_{name}")
    assert picked.returncode == 0, picked.stderr
    assert sorted(tree_bytes(out2)) == ["x_b.png"]  # the suffix is not doubled
    source = np.asarray(Image.open(photos / "b.png"), dtype=np.int16)
    result = np.asarray(Image.open(out2 / "x_b.png"), dtype=np.int16)
    assert np.abs(result[..., :3] - (255 - source[..., :3])).max() <= 1
    np.testing.assert_array_equal(result[..., 3], source[..., 3])  # alpha kept aside and put back


def test_jpeg_quality_changes_size(site: Path, photos: Path, tmp_path: Path) -> None:
    sizes = {}
    for quality in ("30", "95"):
        out = tmp_path / f"q{quality}"
        done = run_batch(site, str(photos / "a.jpg"), "-o", str(out), "--filter", "bt-invert", "--quality", quality)
        assert done.returncode == 0, done.stderr
        sizes[quality] = (out / "a.jpg").stat().st_size
    assert sizes["30"] < sizes["95"]


def test_dry_run_writes_nothing(site: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dry = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-invert", "-r", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would write:") == 4
    assert f"-> {out / 'trip' / 'c.jpg'}" in dry.stdout
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--name", "../{stem}"], "must stay inside OUTDIR"),
        (["--name", "/abs/{stem}"], "must be relative to OUTDIR"),
        (["--name", "{bogus}"], "Unknown field {bogus}"),
        (["--name", "flat", "--format", "png"], "Two inputs would write the same output"),
        (["--format", "gif"], "Unknown output format. Received: --format gif"),
        (["--quality", "0"], "--quality must be an integer between 1 and 100. Received: --quality 0"),
        (["--strenght", "1"], "unrecognized arguments: --strenght 1; did you mean --strength?"),
        (["--strength", "7"], "Received: --strength 7 (see 'neurofilters batch --filter bt-noise --help')"),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(site: Path, photos: Path, tmp_path: Path, extra: list[str], fragment: str) -> None:
    out = tmp_path / "out"
    result = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-noise", *extra)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_outdir_inside_inputs_refused_unless_allowed(site: Path, photos: Path) -> None:
    before = tree_bytes(photos)
    inside = photos / "filtered"
    refused = run_batch(site, str(photos), "-o", str(inside), "--filter", "bt-invert", "-r")
    assert refused.returncode == 2 and "--allow-outdir-inside" in refused.stderr
    assert not inside.exists()
    same = run_batch(site, str(photos), "-o", str(photos), "--filter", "bt-invert", "--allow-outdir-inside")
    assert same.returncode == 1  # every output would be its own input: each file fails, none is touched
    assert "is an input file; refusing to overwrite it" in same.stderr
    assert tree_bytes(photos) == before
    allowed = run_batch(site, str(photos), "-o", str(inside), "--filter", "bt-invert", "-r", "--allow-outdir-inside")
    assert allowed.returncode == 0, allowed.stderr
    rerun = run_batch(site, str(photos), "-o", str(inside), "--filter", "bt-invert", "-r", "--allow-outdir-inside")
    assert "4 outputs" in rerun.stderr  # OUTDIR's files are never taken as inputs


def test_foreign_existing_file_is_not_replaced_without_overwrite(site: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"mine")
    result = run_batch(site, str(photos / "a.jpg"), str(photos / "b.png"), "-o", str(out), "--filter", "bt-invert")
    assert result.returncode == 1
    assert "already exists and was not written by a batch run" in result.stderr
    assert (out / "a.jpg").read_bytes() == b"mine" and (out / "b.png").exists()
    forced = run_batch(site, str(photos / "a.jpg"), "-o", str(out), "--filter", "bt-invert", "--overwrite")
    assert forced.returncode == 0 and (out / "a.jpg").read_bytes() != b"mine"


def test_failing_filter_is_reported_and_exit_1(site: Path, photos: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    result = run_batch(site, str(photos), "-o", str(tmp_path / "out"), "--filter", "bt-crash", "--report", str(report))
    assert result.returncode == 1
    assert "RuntimeError: deliberate failure for the test" in result.stderr
    rows = json.loads(report.read_text())["files"]
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert tree_bytes(tmp_path / "out") == {}


def test_missing_input_and_missing_filter_are_usage_errors(site: Path, tmp_path: Path) -> None:
    missing = run_batch(site, str(tmp_path / "nope"), "-o", str(tmp_path / "o"), "--filter", "bt-invert")
    assert missing.returncode == 2 and "Input not found. Received:" in missing.stderr
    nothing = run_batch(site, str(tmp_path / "*.jpg"), "-o", str(tmp_path / "o"), "--filter", "bt-invert")
    assert nothing.returncode == 2 and "matched no file" in nothing.stderr
    no_filter = run_batch(site, str(tmp_path), "-o", str(tmp_path / "o"))
    assert no_filter.returncode == 2 and "needs --filter NAME or --pipeline FILE" in no_filter.stderr


def test_progress_bar_counts_eta_and_current_file(site: Path, tmp_path: Path) -> None:
    for i in range(5):
        write_photo(tmp_path / "in" / f"p{i}.png", seed=i)
    result = run_batch(site, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--filter", "bt-noise", "--delay", "0.3")
    assert result.returncode == 0, result.stderr
    last = [line for line in result.stderr.splitlines() if line.startswith("batch bt-noise")][-1]
    assert "100%" in last and "5/5 p4.png" in last and "<00:00" in last  # fraction, ETA, counts, current file


@pytest.mark.parametrize("args", [["--help"], ["--filter", "bt-noise", "--help"]])
def test_batch_help_is_light(site: Path, args: list[str]) -> None:
    import subprocess
    import sys

    from test_batch_support import plugin_env

    code = (
        "import sys\nfrom neurofilters.plugin_host.cli.main import main\nrc = main(['batch', *sys.argv[1:]])\n"
        "print('HEAVY', sorted(m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules))\nsys.exit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=plugin_env(site), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout and "--allow-outdir-inside" in result.stdout
    if "--filter" in args:
        assert "--strength" in result.stdout


def test_jobs_worker_death_fails_only_its_file(site: Path, tmp_path: Path) -> None:
    for i in range(5):
        write_photo(tmp_path / "in" / f"p{i}.png", seed=i)
    Image.new("RGB", (8, 8), "white").save(tmp_path / "in" / "p2_white.png")
    report = tmp_path / "r.json"
    result = run_batch(site, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--filter", "bt-die", "--jobs", "2",
                       "--report", str(report))
    assert result.returncode == 1, result.stderr
    rows = {Path(r["input"]).name: r for r in json.loads(report.read_text())["files"]}
    assert rows["p2_white.png"]["status"] == "failed"
    assert "worker process died twice" in rows["p2_white.png"]["error"]
    assert all(r["status"] == "ok" for name, r in rows.items() if name != "p2_white.png")
    assert sorted(tree_bytes(tmp_path / "out")) == [f"p{i}.png" for i in range(5)]


def test_outdir_that_is_a_file_is_a_usage_error(site: Path, photos: Path, tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = run_batch(site, str(photos), "-o", str(target), "--filter", "bt-invert")
    assert result.returncode == 2 and "OUTDIR must be a folder" in result.stderr


def test_two_batches_cannot_write_one_outdir(site: Path, photos: Path, tmp_path: Path) -> None:
    from neurofilters.plugin_host.batch.journal import lock_outdir

    out = tmp_path / "out"
    held = lock_outdir(out)  # as a running batch holds it
    try:
        blocked = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-invert")
        assert blocked.returncode == 2 and "Another batch is writing into this OUTDIR" in blocked.stderr
    finally:
        held.close()
    assert run_batch(site, str(photos), "-o", str(out), "--filter", "bt-invert").returncode == 0


def test_only_our_stale_temporaries_are_removed_and_only_where_the_plan_writes(site: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    users = [out / ".draft.tmp", out / "trip" / ".notes.tmp", out / "sub" / ".notes.tmp",
             out / "elsewhere" / ".x.png.0123abcd.tmp", out / "trip" / ".c.jpg.tmp", out / "trip" / ".c.jpg.0123abcdef.tmp"]
    stale = [out / ".a.jpg.0123abcd.tmp", out / "trip" / ".c.jpg.deadbeef.tmp", out / "trip" / "day2" / ".old.png.00ff00ff.tmp"]
    for path in users + stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"kept?")
    done = run_batch(site, str(photos), "-o", str(out), "--filter", "bt-invert", "-r")
    assert done.returncode == 0, done.stderr
    assert [p for p in users if not p.exists()] == []  # the user's own dot-files, and temporaries outside the plan's folders
    assert [p for p in stale if p.exists()] == []  # what an interrupted run of ours left in the folders it writes to


def test_an_odd_file_name_fails_only_its_own_entry(site: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    write_photo(folder / "good.png", seed=1)
    write_photo(folder / "back\\slash.png", seed=2)
    write_photo(folder / "zz.png", seed=3)
    not_utf8 = os.fsdecode(b"raw\xff.png")  # a valid name, just not UTF-8: processed like any other
    write_photo(folder / not_utf8, seed=4)
    out, report = tmp_path / "out", tmp_path / "r.json"
    result = run_batch(site, str(folder), "-o", str(out), "--filter", "bt-invert", "--report", str(report))
    assert result.returncode == 1, result.stderr
    rows = {Path(r["input"]).name: r for r in json.loads(report.read_text())["files"]}
    assert rows["good.png"]["status"] == rows["zz.png"]["status"] == rows[not_utf8]["status"] == "ok", rows
    bad = rows["back\\slash.png"]
    assert bad["status"] == "failed" and "backslash" in bad["error"], bad
    assert "FAILED" in result.stderr and "backslash" in result.stderr
    assert sorted(tree_bytes(out)) == sorted(["good.png", "zz.png", not_utf8])
    again = run_batch(site, str(folder), "-o", str(out), "--filter", "bt-invert")
    assert again.returncode == 1 and "3 skipped" in again.stderr, again.stderr
    dry = run_batch(site, str(folder), "-o", str(tmp_path / "dry"), "--filter", "bt-invert", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would write:") == 3 and "cannot:" in dry.stdout, dry.stdout + dry.stderr
    assert "raw\\xff.png" in dry.stdout


def test_resume_redoes_an_output_made_from_another_input(site: Path, tmp_path: Path) -> None:
    first_input = write_photo(tmp_path / "in1" / "p.bmp", seed=1)
    other_input = write_photo(tmp_path / "in2" / "p.bmp", seed=2)
    stat = first_input.stat()
    os.utime(other_input, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert other_input.stat().st_size == stat.st_size and other_input.stat().st_mtime_ns == stat.st_mtime_ns
    out = tmp_path / "out"
    assert run_batch(site, str(first_input), "-o", str(out), "--filter", "bt-invert").returncode == 0
    second = run_batch(site, str(other_input), "-o", str(out), "--filter", "bt-invert")
    assert second.returncode == 0 and "1 done" in second.stderr, second.stderr  # same name, size, mtime, hash: other file
    result = np.asarray(Image.open(out / "p.bmp"), dtype=np.int16)
    np.testing.assert_array_equal(result, 255 - np.asarray(Image.open(other_input), dtype=np.int16))


def test_same_named_files_get_advice_that_helps(site: Path, tmp_path: Path) -> None:
    first, second = write_photo(tmp_path / "a" / "x.png", seed=1), write_photo(tmp_path / "b" / "x.png", seed=2)
    out = tmp_path / "out"
    clash = run_batch(site, str(first), str(second), "-o", str(out), "--filter", "bt-invert")
    assert clash.returncode == 2, clash.stderr
    assert "{index}" in clash.stderr and "-r" in clash.stderr and "{ext} or {relpath}" not in clash.stderr, clash.stderr
    assert not out.exists()
    named = run_batch(site, str(first), str(second), "-o", str(out), "--filter", "bt-invert", "--name", "{stem}_{index}")
    assert named.returncode == 0, named.stderr
    assert sorted(tree_bytes(out)) == ["x_0.png", "x_1.png"]
    stems = run_batch(site, str(tmp_path / "a"), str(write_photo(tmp_path / "c" / "x.jpg").parent), "-o", str(tmp_path / "o2"),
                      "--filter", "bt-invert", "--format", "png")
    assert stems.returncode == 2 and "{ext}" in stems.stderr, stems.stderr


def test_flat_glob_accepts_an_outdir_below_the_current_folder(site: Path, tmp_path: Path) -> None:
    write_photo(tmp_path / "x.png", seed=1)
    write_photo(tmp_path / "sub" / "y.png", seed=2)
    flat = run_batch(site, "*.png", "-o", "dreams", "--filter", "bt-invert", cwd=tmp_path)
    assert flat.returncode == 0, flat.stderr
    assert sorted(tree_bytes(tmp_path / "dreams")) == ["x.png"]
    again = run_batch(site, "*.png", "-o", "dreams", "--filter", "bt-invert", cwd=tmp_path)
    assert again.returncode == 0 and "1 skipped" in again.stderr, again.stderr
    for pattern in ("**/*.png", "*/y.png"):  # these reach sub-folders, so OUTDIR below their base is refused
        deep = run_batch(site, pattern, "-o", "deep", "--filter", "bt-invert", cwd=tmp_path)
        assert deep.returncode == 2 and "--allow-outdir-inside" in deep.stderr, (pattern, deep.stderr)
    assert not (tmp_path / "deep").exists()
    before = tree_bytes(tmp_path)
    here = run_batch(site, "*.png", "-o", ".", "--filter", "bt-invert", cwd=tmp_path)
    assert here.returncode == 2, here.stderr  # OUTDIR is the glob's own folder
    assert tree_bytes(tmp_path) == before


def test_outdir_rules_for_flat_and_deep_globs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurofilters.plugin_host import ParameterError
    from neurofilters.plugin_host.batch.inputs import discover_inputs
    from neurofilters.plugin_host.batch.plan import check_outdir

    write_photo(tmp_path / "photos" / "x.png")
    write_photo(tmp_path / "photos" / "sub" / "y.png")
    monkeypatch.chdir(tmp_path)
    flat = discover_inputs(["photos/*.png"])
    check_outdir(tmp_path / "photos" / "out", flat, allow_inside=False)  # *.png never reaches photos/out
    with pytest.raises(ParameterError, match="OUTDIR is inside the input folder"):
        check_outdir(tmp_path / "photos", flat, allow_inside=False)  # but photos itself is scanned
    for pattern in ("photos/**/*.png", "photos/*/y.png", "photos/**"):
        with pytest.raises(ParameterError, match="--allow-outdir-inside"):
            check_outdir(tmp_path / "photos" / "out", discover_inputs([pattern]), allow_inside=False)
