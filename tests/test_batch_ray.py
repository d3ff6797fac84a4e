"""The Ray engine: a real local Ray instance, and a Ray actor killed (SIGKILL) mid-batch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from neurofilters.plugin_host.batch.journal import JOURNAL_NAME
from processes import alive
from test_batch_support import batch_command, install_test_plugin, plugin_env, run_batch, tree_bytes, write_photo

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

N_FILES = 10


def _actor_processes(marker: str) -> list[int]:
    """Pids of this test's Ray actor processes (found in /proc by title and an environment marker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            if b"_BatchActor" in title and f"NF_BATCH_TEST_MARKER={marker}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ray_batch_survives_a_killed_actor(tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    for i in range(N_FILES):
        write_photo(tmp_path / "in" / ("deep" if i % 2 else "") / f"p{i}.png", size=(40, 30), seed=i)
    args = [str(tmp_path / "in"), "-r", "--filter", "bt-noise", "--delay", "0.4", "--seed", "3", "-q"]
    local = run_batch(site, *args, "-o", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    reference = tree_bytes(tmp_path / "local")

    marker = uuid.uuid4().hex
    env = {**plugin_env(site), "NF_BATCH_TEST_MARKER": marker, "RAY_AUTH_MODE": "disabled"}
    report = tmp_path / "ray.json"
    process = subprocess.Popen([*batch_command(), *args, "-o", str(tmp_path / "ray"), "--engine", "ray", "--jobs", "2",
                                "--report", str(report)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 240
    while process.poll() is None and time.monotonic() < deadline:
        journal = tmp_path / "ray" / JOURNAL_NAME
        if killed is None and journal.exists() and journal.read_text().count('"state": "done"') >= 1:
            actors = _actor_processes(marker)
            if actors:
                killed = actors[0]
                os.kill(killed, signal.SIGKILL)  # a Ray worker dies mid-batch
        time.sleep(0.05)
    _, err = process.communicate(timeout=120)
    assert killed is not None, "no Ray actor process was found to kill: " + err
    assert process.returncode == 0, err
    rows = json.loads(report.read_text())["files"]
    assert [r["status"] for r in rows] == ["ok"] * N_FILES
    assert tree_bytes(tmp_path / "ray") == reference  # same files, same bytes as the local engine
    assert not alive(killed)
    until = time.monotonic() + 30
    while _actor_processes(marker) and time.monotonic() < until:
        time.sleep(0.5)
    assert _actor_processes(marker) == []  # the local Ray instance was shut down

    again = run_batch(site, *args, "-o", str(tmp_path / "ray"), "--engine", "ray")
    assert again.returncode == 0 and f"{N_FILES} skipped" in again.stderr  # resume works the same way


def test_a_local_ray_run_leaves_no_session_folder(tmp_path: Path) -> None:
    """Ray's session (logs, sockets) goes to a folder of the run, removed when it ends: no TMPDIR/ray/session_* left."""
    site = install_test_plugin(tmp_path / "site")
    for i in range(3):
        write_photo(tmp_path / "in" / f"p{i}.png", size=(24, 16), seed=i)
    temp_root = Path(tempfile.mkdtemp(prefix="nfr", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    try:
        env = {**plugin_env(site), "TMPDIR": str(temp_root), "RAY_AUTH_MODE": "disabled"}
        env.pop("RAY_TMPDIR", None)
        process = subprocess.Popen([*batch_command(), str(tmp_path / "in"), "--filter", "bt-noise", "--seed", "3", "-q",
                                    "-o", str(tmp_path / "out"), "--engine", "ray", "--jobs", "1"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        session_seen = False
        deadline = time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            session_seen = session_seen or any((temp_root / f"neurofilters-{process.pid}-ray").glob("session_*"))
            time.sleep(0.05)
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["p0.png", "p1.png", "p2.png"]
        assert sorted(p.name for p in temp_root.iterdir()) == []  # no ray/session_*, no neurofilters-PID-* folder
        assert session_seen, "Ray's session was not kept in the run's own folder"
    finally:
        shutil.rmtree(temp_root, ignore_errors=True)
