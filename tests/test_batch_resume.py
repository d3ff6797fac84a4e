"""Kill-and-resume: a real ``kill -9`` of a real batch process at several points,
then reruns: every output complete, none partial, byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from neurofilters.plugin_host.batch.journal import JOURNAL_NAME, LOCK_NAME, Journal
from processes import alive
from test_batch_support import batch_command, install_test_plugin, plugin_env, run_batch, tree_bytes, write_photo

N_FILES = 12


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_test_plugin(tmp_path_factory.mktemp("resume-site"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume-corpus")
    for i in range(N_FILES):
        folder = root / ("" if i % 3 else "sub")
        write_photo(folder / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", size=(64, 48), seed=i)
    return root


def _done_lines(out: Path) -> int:
    try:
        text = (out / JOURNAL_NAME).read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return text.count('"state": "done"')


def _assert_no_partial(out: Path, reference: dict[str, bytes]) -> None:
    for rel, data in tree_bytes(out).items():
        assert data == reference[rel], f"{rel} differs from the uninterrupted run"
        with Image.open(out / rel) as image:
            image.load()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_9_then_resume_is_byte_identical(site: Path, corpus: Path, tmp_path: Path, jobs: str) -> None:
    args = [str(corpus), "-r", "--filter", "bt-noise", "--delay", "0.12", "--seed", "5", "-q"]
    reference_dir = tmp_path / "reference"
    full = run_batch(site, *args, "-o", str(reference_dir))
    assert full.returncode == 0, full.stderr
    reference = tree_bytes(reference_dir)
    assert len(reference) == N_FILES

    out = tmp_path / "out"
    kills = 0
    for target in (2, 6, 9):  # kill after this many finished files (total), resuming in between
        process = subprocess.Popen(
            [*batch_command(), *args, "-o", str(out), "--jobs", jobs],
            env=plugin_env(site), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while _done_lines(out) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the batch and its worker processes, no clean-up
            kills += 1
        process.wait(timeout=60)
        _assert_no_partial(out, reference)
        assert len(tree_bytes(out)) < N_FILES
    assert kills == 3

    resumed = run_batch(site, *args, "-o", str(out), "--jobs", jobs, "--report", str(tmp_path / "r.json"))
    assert resumed.returncode == 0, resumed.stderr
    counts = json.loads((tmp_path / "r.json").read_text())["counts"]
    assert counts.get("skipped", 0) >= 9 and counts.get("skipped", 0) + counts.get("ok", 0) == N_FILES
    assert tree_bytes(out) == reference
    leftovers = [p.name for p in out.rglob(".*") if p.name not in (JOURNAL_NAME, LOCK_NAME)]
    assert leftovers == []


def test_torn_journal_line_is_tolerated(tmp_path: Path) -> None:
    source = write_photo(tmp_path / "in.png")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "in.png"
    target.write_bytes(source.read_bytes())
    journal = Journal(out)
    journal.record(target, "h1", source)
    journal.close()
    with open(out / JOURNAL_NAME, "ab") as stream:
        stream.write(b'{"hash": "h2", "outp')  # what a kill in the middle of a write leaves
    reopened = Journal(out)
    assert reopened.is_done(target, "h1", source)
    assert not reopened.is_done(target, "h2", source)
    second = out / "second.png"
    second.write_bytes(b"x")
    reopened.record(second, "h3", source)  # appends on a fresh line after the torn one
    reopened.close()
    again = Journal(out)
    assert again.is_done(second, "h3", source) and again.is_done(target, "h1", source)
    source.write_bytes(source.read_bytes() + b"\0")  # the input changed: not done any more
    assert not Journal(out).is_done(target, "h1", source)


def test_ctrl_c_exits_130_and_the_rerun_finishes(site: Path, corpus: Path, tmp_path: Path) -> None:
    args = [str(corpus), "-r", "--filter", "bt-noise", "--delay", "0.12", "-q", "-o", str(tmp_path / "out")]
    # A shell runs background jobs with SIGINT ignored, and children inherit that (Python then
    # installs no KeyboardInterrupt handler): give the batch the disposition a terminal gives it,
    # so the test holds however the suite itself was started.
    process = subprocess.Popen([*batch_command(), *args], env=plugin_env(site), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _done_lines(tmp_path / "out") < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "run the same command again to finish" in err
    partial = tree_bytes(tmp_path / "out")
    assert 3 <= len(partial) < N_FILES
    for rel in partial:
        with Image.open(tmp_path / "out" / rel) as image:
            image.load()
    finished = run_batch(site, *args)
    assert finished.returncode == 0 and f"{len(partial)} skipped" in finished.stderr
    assert len(tree_bytes(tmp_path / "out")) == N_FILES


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process parents from /proc (Linux)")
def test_jobs_workers_die_with_a_killed_batch_and_the_rerun_is_byte_identical(site: Path, corpus: Path, tmp_path: Path) -> None:
    """kill -9 of the batch process alone (not its group): its --jobs workers must not go on writing."""
    args = [str(corpus), "-r", "--filter", "bt-noise", "--delay", "0.3", "--seed", "5", "-q", "--jobs", "2"]
    out = tmp_path / "out"
    process = subprocess.Popen([*batch_command(), *args, "-o", str(out)], env=plugin_env(site),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _done_lines(out) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(process.pid)
    assert process.poll() is None and len(workers) >= 2
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "worker processes outlived the killed batch"
    written = len(tree_bytes(out))
    time.sleep(0.5)
    assert len(tree_bytes(out)) == written < N_FILES  # nobody writes into OUTDIR any more

    resumed = run_batch(site, *args, "-o", str(out))
    assert resumed.returncode == 0, resumed.stderr
    reference = run_batch(site, *args, "-o", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr
    assert tree_bytes(out) == tree_bytes(tmp_path / "reference")


@pytest.mark.slow
def test_ctrl_c_with_jobs_records_what_finished(site: Path, corpus: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches the batch and its workers (one process group): every finished output is counted."""
    out = tmp_path / "out"
    report = tmp_path / "r.json"
    args = [str(corpus), "-r", "--filter", "bt-noise", "--delay", "0.25", "-q", "--jobs", "2", "-o", str(out),
            "--report", str(report)]
    process = subprocess.Popen([*batch_command(), *args], env=plugin_env(site), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _done_lines(out) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    on_disk = len(tree_bytes(out))
    counts = json.loads(report.read_text())["counts"]
    assert 3 <= on_disk < N_FILES
    assert counts.get("ok", 0) == on_disk and f"{on_disk} done" in err, (counts, err)
    finished = run_batch(site, *args)
    assert finished.returncode == 0 and f"{on_disk} skipped" in finished.stderr
