"""The GIMP worker and the plug-in's worker client, without GIMP.

The client is the real code of ``gimp_plugin/neurofilters.py`` (it imports
``gi`` only when GIMP runs it), the worker the real ``python -m
plugin_host._worker`` process it starts; filters come from the test plugin
in ``tests/gimp/testplugin``, found through its entry point.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import plugin_host
from plugin_host import _worker

HERE = Path(__file__).resolve().parent
TESTPLUGIN_DIR = HERE / "gimp" / "testplugin"
PLUGIN_FILE = HERE.parent / "gimp_plugin" / "neurofilters.py"


def load_plugin_module() -> Any:
    """The plug-in file as a module (outside GIMP it never imports ``gi``)."""
    spec = importlib.util.spec_from_file_location("_nf_gimp_plugin_under_test", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLUGIN = load_plugin_module()


@pytest.fixture()
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``XDG_RUNTIME_DIR`` (short, for socket paths) and the test plugin visible to workers."""
    base = Path(tempfile.mkdtemp(prefix="nfw"))
    os.chmod(base, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", os.fspath(base))
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.fspath(TESTPLUGIN_DIR))
    monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
    plugin_host.reset_registry()
    try:
        yield base
    finally:
        for sock in base.glob("neurofilters/*.sock"):
            _stop(sock)
        shutil.rmtree(base, ignore_errors=True)


def _stop(sock: Path) -> None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(os.fspath(sock))
        _worker.recv_message(client)  # hello
        _worker.send_message(client, {"op": "shutdown"})
        _worker.recv_message(client)
    except OSError:
        pass
    finally:
        client.close()


def make_client(name: str = "t", idle: float = 60) -> Any:
    manifest = {
        "format": 1,
        "python": sys.executable,
        "env": {"PYTHONPATH": os.fspath(TESTPLUGIN_DIR), "NEUROFILTERS_WORKER_IDLE_TIMEOUT": str(idle)},
        "_digest": f"{name}-{time.monotonic_ns()}",
    }
    return PLUGIN.WorkerClient(manifest)


def _pixels(height: int = 12, width: int = 16, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (height, width, channels), dtype=np.uint8)


def test_client_result_equals_apply_filter_and_progress_arrives(runtime_dir):
    client = make_client()
    pixels = _pixels(channels=4)
    values = {"amount": 60, "flip": True, "tint": [0.1, 0.2, 0.3], "tint_mix": 0.25, "noise": 0.1, "target": "7"}
    seen: list[tuple[float, str]] = []
    reply, data = client.run(
        "nf-test-invert", values, 42, 16, 12, 4, "u8", pixels.tobytes(), lambda f, m: seen.append((f, m))
    )
    spec = plugin_host.get_registry().get_filter("nf-test-invert")
    expected = plugin_host.apply_filter(spec, pixels.astype(np.float32) / 255, values, seed=42)
    expected_u8 = np.round(expected * 255).astype(np.uint8)
    result = np.frombuffer(bytes(data), np.uint8).reshape(12, 16, 4)
    assert (reply["width"], reply["height"], reply["channels"], reply["dtype"]) == (16, 12, 4, "u8")
    assert np.array_equal(result, expected_u8)
    assert np.array_equal(result[:, :, 3], pixels[:, :, 3])  # alpha untouched
    assert seen[0] == (0.0, "step 1/4") and seen[-1] == (1.0, "done")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    status = client.ping()
    assert status["calls"] == 1 and status["models"] == ["nf-test-model"] and status["last_compute_seconds"] > 0


def test_float_pixels_travel_without_rounding(runtime_dir):
    client = make_client()
    pixels = np.random.default_rng(2).random((5, 7, 3), dtype=np.float32)
    reply, data = client.run("nf-test-invert", {"amount": 100}, 0, 7, 5, 3, "f32", pixels.astype("<f4").tobytes())
    result = np.frombuffer(bytes(data), "<f4").reshape(5, 7, 3)
    assert reply["dtype"] == "f32"
    assert np.abs(result - (1 - pixels)).max() < 1e-6


def test_warm_worker_serves_several_clients_with_models_loaded_once(runtime_dir):
    first = make_client("warm")
    second = PLUGIN.WorkerClient(first.manifest)  # a later GIMP call: a new plug-in process
    first.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    pid = first.ping()["pid"]
    second.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    status = second.ping()
    assert status["pid"] == pid and status["calls"] == 2 and status["models"] == ["nf-test-model"]
    assert not second.started_worker


@pytest.mark.parametrize(
    ("values", "name", "raw"),
    [({"layer": "no spaces allowed"}, "layer", "no spaces allowed"), ({"amount": 101}, "amount", 101)],
)
def test_bad_parameter_gives_the_validation_message(runtime_dir, values, name, raw):
    client = make_client()
    spec = plugin_host.get_registry().get_filter("nf-test-invert")
    with pytest.raises(plugin_host.ParameterError) as expected:
        spec.param_index[name].convert(raw)
    with pytest.raises(PLUGIN.WorkerError) as error:
        client.run("nf-test-invert", values, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert str(error.value) == str(expected.value)
    assert f"Received: {name}=" in str(error.value)


def test_unknown_parameter_and_unknown_filter_are_explained(runtime_dir):
    client = make_client()
    with pytest.raises(PLUGIN.WorkerError, match=r"Unknown parameter. Received: amout=3.*Did you mean: amount"):
        client.run("nf-test-invert", {"amout": 3}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    with pytest.raises(PLUGIN.WorkerError, match=r"Unknown filter.*'nf-test-invrt'.*neurofilters gimp install"):
        client.run("nf-test-invrt", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())


def test_wrong_pixel_count_is_a_protocol_error(runtime_dir):
    client = make_client()
    with pytest.raises(PLUGIN.WorkerError, match=r"Expected 576 bytes of u8 pixels for 16x12x3. Received: 10 bytes"):
        client.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", b"0123456789")


def test_crash_is_reported_and_the_next_call_starts_a_fresh_worker(runtime_dir):
    client = make_client()
    pid = client.ping()["pid"]
    with pytest.raises(PLUGIN.WorkerError, match="worker stopped unexpectedly.*next call starts a fresh worker"):
        client.run("nf-test-crash", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    reply, _ = client.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert reply["type"] == "result"
    assert client.ping()["pid"] != pid


def test_worker_stops_a_filter_whose_client_went_away(runtime_dir):
    client = make_client()
    pid = client.ping()["pid"]
    sock = client.connect()
    header = {"op": "run", "filter": "nf-test-slow", "values": {"steps": 200}, "seed": 0}
    _worker.send_message(sock, {**header, "width": 16, "height": 12, "channels": 3, "dtype": "u8"}, _pixels().tobytes())
    reply, _ = _worker.recv_message(sock)
    assert reply["type"] == "progress"
    sock.close()  # like GIMP killing the plug-in when the user cancels
    started = time.monotonic()
    status = client.ping()  # answered once the slow filter noticed (200 steps would take 10 s)
    assert time.monotonic() - started < 3
    assert status["pid"] == pid and status["calls"] == 1


def test_channel_is_private_to_the_user(runtime_dir):
    client = make_client()
    client.ping()
    directory = Path(client.directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(client.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(client.socket_path).st_mode)
    if os.geteuid() != 0:
        return
    # Another user cannot reach it (a real second user: a child process that drops to 'nobody').
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.connect(client.socket_path)
        except PermissionError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_runtime_directory_with_loose_permissions_is_refused(runtime_dir):
    loose = runtime_dir / "neurofilters"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    with pytest.raises(PLUGIN.WorkerError, match=r"must be a directory of uid \d+ with mode 0700. Received: .*mode=0o755"):
        PLUGIN.runtime_directory()


def test_idle_worker_exits_and_removes_its_socket(runtime_dir):
    path = runtime_dir / "idle.sock"
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "plugin_host._worker", "--socket", os.fspath(path), "--idle-timeout", "0.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0 and "Idle for 0.5 s; exiting." in process.stderr
    assert time.monotonic() - started < 30
    assert not path.exists()


def test_second_worker_on_the_same_socket_leaves_the_first_alone(runtime_dir):
    client = make_client()
    first = client.ping()["pid"]
    process = subprocess.run(
        [sys.executable, "-m", "plugin_host._worker", "--socket", client.socket_path], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0 and "Another worker already serves" in process.stderr
    assert client.ping()["pid"] == first


def test_worker_refuses_a_world_readable_socket_directory(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, 0o755)
    process = subprocess.run(
        [sys.executable, "-m", "plugin_host._worker", "--socket", os.fspath(folder / "w.sock"), "--idle-timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert "must belong to uid" in process.stderr and "mode=0o755" in process.stderr


def test_missing_interpreter_is_explained(runtime_dir):
    client = make_client()
    client.manifest["python"] = "/nonexistent/python"
    with pytest.raises(PLUGIN.WorkerError, match=r"Received: python='/nonexistent/python'.*neurofilters gimp install"):
        client.ping()


def test_worker_that_cannot_start_shows_its_log(runtime_dir):
    client = make_client()
    client.manifest["env"]["NEUROFILTERS_WORKER_IDLE_TIMEOUT"] = "soon"
    with pytest.raises(PLUGIN.WorkerError, match=r"(?s)exited with status 1 while starting.*NEUROFILTERS_WORKER_IDLE_TIMEOUT must be"):
        client.ping()


def test_garbage_gets_a_protocol_error(runtime_dir):
    client = make_client()
    client.ping()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(client.socket_path)
    hello, _ = _worker.recv_message(raw)
    assert hello["type"] == "hello" and hello["protocol"] == _worker.PROTOCOL_VERSION
    raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
    header, _ = _worker.recv_message(raw)
    raw.close()
    assert header["type"] == "error" and "Received: b'GET '" in header["message"]
    assert client.ping()["type"] == "pong"  # and it keeps serving


def test_describe_lists_the_registry_as_json():
    process = subprocess.run(
        [sys.executable, "-m", "plugin_host._worker", "--describe"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert process.returncode == 0, process.stderr
    description = json.loads(process.stdout)
    assert [f["name"] for f in description["filters"]] == list(plugin_host.get_registry().filters)
    assert "tensorflow" not in process.stderr.lower()


def test_worker_module_does_not_import_keras_or_tensorflow():
    code = "import sys, plugin_host._worker as w; w.describe_filters(); print(sorted(m for m in ('tensorflow','keras','jax','torch') if m in sys.modules))"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_sigterm_removes_the_socket(runtime_dir):
    path = runtime_dir / "term.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "plugin_host._worker", "--socket", os.fspath(path)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not path.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
