"""The GIMP worker and the plug-in's worker client, without GIMP.

The client is the real code of ``gimp_plugin/client.py`` (the plug-in
imports ``gi`` only when GIMP runs it), the worker the real ``python -m
neurofilters.plugin_host.gimp.worker`` process it starts; filters come from the test plugin
in ``tests/gimp/testplugin``, found through its entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import neurofilters.plugin_host as plugin_host
from neurofilters.gimp_plugin import client as plugin_client
from neurofilters.gimp_plugin import plan as plugin_plan
from neurofilters.plugin_host.gimp import worker as _worker

HERE = Path(__file__).resolve().parent
TESTPLUGIN_DIR = HERE / "gimp" / "testplugin"
PLUGIN_DIR = HERE.parent / "gimp_plugin"


def worker_pythonpath() -> str:
    """PYTHONPATH for workers: the test plugin, then this process's PYTHONPATH (a checkout's package root)."""
    rest = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != os.fspath(TESTPLUGIN_DIR)]
    return os.pathsep.join([os.fspath(TESTPLUGIN_DIR), *rest])




@pytest.fixture()
def runtime_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``XDG_RUNTIME_DIR`` (short, for socket paths) and the test plugin visible to workers."""
    base = Path(tempfile.mkdtemp(prefix="nfw"))
    os.chmod(base, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", os.fspath(base))
    monkeypatch.delenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.setenv("PYTHONPATH", worker_pythonpath())
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


def make_client(name: str = "t", idle: float = 60, **env: str) -> Any:
    """A client of a new worker; ``env`` goes into the manifest's environment (timeouts, grace)."""
    manifest = {
        "format": 1,
        "python": sys.executable,
        "env": {"PYTHONPATH": os.environ["PYTHONPATH"], "NEUROFILTERS_WORKER_IDLE_TIMEOUT": str(idle), **env},
        "_digest": f"{name}-{time.monotonic_ns()}",
    }
    return plugin_client.WorkerClient(manifest)


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (no longer exists, or is a zombie nobody reaped yet)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat_line.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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
    second = plugin_client.WorkerClient(first.manifest)  # a later GIMP call: a new plug-in process
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
    with pytest.raises(plugin_client.WorkerError) as error:
        client.run("nf-test-invert", values, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert str(error.value) == str(expected.value)
    assert f"Received: {name}=" in str(error.value)


def test_unknown_parameter_and_unknown_filter_are_explained(runtime_dir):
    client = make_client()
    with pytest.raises(plugin_client.WorkerError, match=r"Unknown parameter. Received: amout=3.*Did you mean: amount"):
        client.run("nf-test-invert", {"amout": 3}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    with pytest.raises(plugin_client.WorkerError, match=r"Unknown filter.*'nf-test-invrt'.*neurofilters gimp install"):
        client.run("nf-test-invrt", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())


def test_wrong_pixel_count_is_a_protocol_error(runtime_dir):
    client = make_client()
    message = r"Expected 576 bytes of u8 pixels for 16x12x3. Received: 10 bytes"
    with pytest.raises(plugin_client.WorkerError, match=message):  # caught by the client before sending
        client.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", b"0123456789")
    header = {"op": "run", "filter": "nf-test-invert", "values": {}, "width": 16, "height": 12, "channels": 3, "dtype": "u8"}
    with pytest.raises(plugin_client.WorkerError, match=message):  # and by the worker, for any other client
        client.request(header, b"0123456789")
    with pytest.raises(plugin_client.WorkerError, match=r"Expected 586 bytes of pixels for 2 image\(s\). Received: 576 bytes"):
        client.request({**header, "images": [{"name": "x", "width": 1, "height": 10, "channels": 1, "dtype": "u8"}]}, _pixels().tobytes())


def test_crash_is_reported_and_the_next_call_starts_a_fresh_worker(runtime_dir):
    client = make_client()
    pid = client.ping()["pid"]
    with pytest.raises(plugin_client.WorkerError, match="worker stopped unexpectedly.*next call starts a fresh worker"):
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


NOBODY = 65534


def _as_nobody(probe: Any) -> int:
    """Run ``probe()`` in a forked child that dropped to uid/gid 65534; its return value is the exit code."""
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = probe()
        except BaseException:  # noqa: BLE001 - any surprise is a distinct exit code
            code = 98
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status)


def _connect_probe(path: str) -> Any:
    """0: permission denied; 10: connected, the worker closed without a hello; 11: got a hello; 2: other error."""

    def probe() -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            try:
                sock.connect(path)
            except PermissionError:
                return 0
            except OSError:
                return 2
            try:
                return 11 if sock.recv(64) else 10
            except OSError:
                return 10

    return probe


def test_channel_is_private_to_the_user(runtime_dir):
    client = make_client()
    pid = client.ping()["pid"]
    directory = Path(client.directory)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(os.stat(client.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(client.socket_path).st_mode)
    if os.geteuid() != 0:
        pytest.skip("connecting as another user needs root (the modes above were checked)")
    # Each guard on its own, against a real second user (uid 65534) in a forked child:
    # 1. the 0700 directory stops it at the path;
    assert _as_nobody(_connect_probe(client.socket_path)) == 0
    # 2. the 0600 socket stops it even when the directory is bypassed: through an O_PATH
    #    descriptor of the socket (opened here, inherited by the child) the path lookup never
    #    enters the directory, so only the socket's own mode is left to refuse;
    handle = os.open(client.socket_path, os.O_PATH)
    try:
        bypass = f"/proc/self/fd/{handle}"
        assert _as_nobody(_connect_probe(bypass)) == 0
        # 3. and with both modes opened up, the worker's peer-uid check refuses the connection:
        #    the child connects, but gets no hello.
        os.chmod(client.socket_path, 0o666)
        try:
            assert _as_nobody(_connect_probe(bypass)) == 10
        finally:
            os.chmod(client.socket_path, 0o600)
        # The same bypass works for the owner (so the probes above really reached the socket).
        assert _connect_probe(bypass)() == 11
    finally:
        os.close(handle)
    assert f"Refused a connection from uid {NOBODY}" in Path(client.log_path).read_text()
    assert client.ping()["pid"] == pid  # and it keeps serving its user


def test_peer_credentials_of_a_real_socketpair_are_this_user():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert _worker.peer_uid(left) == os.getuid() and _worker.peer_uid(right) == os.getuid()
        assert _worker.peer_allowed(left)


def test_peer_check_refuses_another_user():
    if os.geteuid() != 0:
        pytest.skip("a peer of another uid needs root to create (setuid in a forked child)")
    # in /tmp itself, which every uid may traverse: not tempfile's default, which a command run in this process
    # (main() calls start_process) points at its private, owner-only folder
    folder = tempfile.mkdtemp(prefix="nfpeer", dir="/tmp")
    os.chmod(folder, 0o755)
    path = os.path.join(folder, "open.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with server:
        server.bind(path)
        os.chmod(path, 0o666)
        server.listen(1)
        server.settimeout(20)

        def probe() -> int:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            sock.recv(1)  # wait until the parent has looked at the credentials
            return 0

        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                code = probe()
            finally:
                os._exit(code)
        try:
            conn, _ = server.accept()
            with conn:
                uid, allowed = _worker.peer_uid(conn), _worker.peer_allowed(conn)
                conn.sendall(b"x")
        finally:
            _, status = os.waitpid(child, 0)
            shutil.rmtree(folder, ignore_errors=True)
    assert os.waitstatus_to_exitcode(status) == 0
    assert uid == NOBODY
    assert not allowed


# -- never a hang -------------------------------------------------------------------------------
def test_quiet_slow_filter_is_kept_alive_by_heartbeats(runtime_dir):
    client = make_client(NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT="0.8")
    assert client.inactivity_timeout == 0.8
    started = time.monotonic()
    reply, _ = client.run("nf-test-stall", {"mode": "sleep", "seconds": 2.5}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert reply["type"] == "result" and time.monotonic() - started >= 2.5  # three times the timeout, silent

    # On the wire: heartbeats at the interval the client asked for, with no progress between.
    sock = client.connect()
    header = {"op": "run", "filter": "nf-test-stall", "values": {"mode": "sleep", "seconds": 1.0}, "seed": 0, "heartbeat": 0.1}
    _worker.send_message(sock, {**header, "width": 16, "height": 12, "channels": 3, "dtype": "u8"}, _pixels().tobytes())
    kinds = []
    while not kinds or kinds[-1] != "result":
        kinds.append(_worker.recv_message(sock)[0]["type"])
    sock.close()
    assert kinds[0] == "progress" and 5 <= kinds.count("heartbeat") <= 12, kinds


def test_frozen_worker_is_killed_after_the_inactivity_timeout(runtime_dir):
    client = make_client(NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT="1")
    pid = client.ping()["pid"]
    started = time.monotonic()
    with pytest.raises(plugin_client.WorkerError) as error:
        client.run("nf-test-stall", {"mode": "freeze"}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert time.monotonic() - started < 8
    message = str(error.value)
    assert f"worker (pid {pid}) sent nothing for 1 s (NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT)" in message
    assert f"It was killed (pid {pid}); the next call starts a fresh worker. Log {client.log_path}:" in message
    assert "listening on" in message  # the log's tail follows
    assert _wait_gone(pid)
    reply, _ = client.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert reply["type"] == "result" and client.ping()["pid"] != pid


def test_worker_that_stops_greeting_is_killed_at_the_next_call(runtime_dir):
    client = make_client(NEUROFILTERS_GIMP_HELLO_TIMEOUT="1")
    pid = client.ping()["pid"]
    os.kill(pid, signal.SIGSTOP)  # alive, listening, but nothing in it runs
    try:
        started = time.monotonic()
        with pytest.raises(plugin_client.WorkerError) as error:
            client.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes())
        assert time.monotonic() - started < 8
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    message = str(error.value)
    assert "accepted the connection but did not answer within 1 s (NEUROFILTERS_GIMP_HELLO_TIMEOUT)" in message
    assert f"It was killed (pid {pid})" in message and f"Log {client.log_path}" in message
    assert _wait_gone(pid)
    assert not os.path.exists(client.socket_path)  # removed, so the next call starts a worker at once
    assert client.ping()["pid"] != pid


def test_busy_worker_greets_at_once_and_the_queued_call_waits_with_heartbeats(runtime_dir):
    first = make_client(NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT="0.8")
    second = plugin_client.WorkerClient(first.manifest)
    pid = first.ping()["pid"]
    results: list[Any] = []
    slow = threading.Thread(
        target=lambda: results.append(
            first.run("nf-test-stall", {"mode": "sleep", "seconds": 2.5}, 0, 16, 12, 3, "u8", _pixels().tobytes())[0]
        )
    )
    slow.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        assert second.ping()["pid"] == pid  # answered while the slow filter runs
        assert time.monotonic() - started < 1
        seen: list[str] = []
        reply, _ = second.run("nf-test-invert", {}, 0, 16, 12, 3, "u8", _pixels().tobytes(), lambda f, m: seen.append(m))
    finally:
        slow.join(30)
    assert results and results[0]["type"] == "result"
    assert reply["type"] == "result" and seen[0] == "waiting for another call to finish"
    assert time.monotonic() - started >= 1.5  # it really waited (silently but for heartbeats) for the first


def test_worker_exits_when_a_cancelled_filter_does_not_stop(runtime_dir):
    client = make_client(NEUROFILTERS_WORKER_CANCEL_GRACE="1")
    pid = client.ping()["pid"]
    sock = client.connect()
    header = {"op": "run", "filter": "nf-test-stall", "values": {"mode": "sleep", "seconds": 60}, "seed": 0}
    _worker.send_message(sock, {**header, "width": 16, "height": 12, "channels": 3, "dtype": "u8"}, _pixels().tobytes())
    assert _worker.recv_message(sock)[0]["type"] == "progress"
    sock.close()  # the user cancelled; the sleeping filter never reports progress again
    assert _wait_gone(pid, timeout=15)
    assert "the filter did not stop within 1 s" in Path(client.log_path).read_text()
    assert client.ping()["pid"] != pid


def test_timeouts_come_from_gimps_environment_or_the_manifest(runtime_dir, monkeypatch):
    client = make_client(NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT="7", NEUROFILTERS_GIMP_HELLO_TIMEOUT="3")
    assert (client.start_timeout, client.hello_timeout, client.inactivity_timeout) == (
        plugin_client.WORKER_START_TIMEOUT,
        3.0,
        7.0,
    )
    monkeypatch.setenv("NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT", "2.5")
    assert plugin_client.WorkerClient(client.manifest).inactivity_timeout == 2.5
    monkeypatch.setenv("NEUROFILTERS_GIMP_START_TIMEOUT", "soon")
    with pytest.raises(plugin_client.WorkerError, match=r"NEUROFILTERS_GIMP_START_TIMEOUT must be a number of seconds > 0. Received: .*=soon"):
        plugin_client.WorkerClient(client.manifest)


def test_runtime_directory_with_loose_permissions_is_refused(runtime_dir):
    loose = runtime_dir / "neurofilters"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    with pytest.raises(plugin_client.WorkerError, match=r"must be a directory of uid \d+ with mode 0700. Received: .*mode=0o755"):
        plugin_client.runtime_directory()


def test_idle_worker_exits_and_removes_its_socket(runtime_dir):
    path = runtime_dir / "idle.sock"
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "neurofilters.plugin_host.gimp.worker", "--socket", os.fspath(path), "--idle-timeout", "0.5"],
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
        [sys.executable, "-m", "neurofilters.plugin_host.gimp.worker", "--socket", client.socket_path], capture_output=True, text=True, timeout=60
    )
    assert process.returncode == 0 and "Another worker already serves" in process.stderr
    assert client.ping()["pid"] == first


def test_worker_refuses_a_world_readable_socket_directory(tmp_path):
    folder = tmp_path / "open"
    folder.mkdir()
    os.chmod(folder, 0o755)
    process = subprocess.run(
        [sys.executable, "-m", "neurofilters.plugin_host.gimp.worker", "--socket", os.fspath(folder / "w.sock"), "--idle-timeout", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2
    assert "must belong to uid" in process.stderr and "mode=0o755" in process.stderr


def test_missing_interpreter_is_explained(runtime_dir):
    client = make_client()
    client.manifest["python"] = "/nonexistent/python"
    with pytest.raises(plugin_client.WorkerError, match=r"Received: python='/nonexistent/python'.*neurofilters gimp install"):
        client.ping()


def test_worker_that_cannot_start_shows_its_log(runtime_dir):
    client = make_client()
    client.manifest["env"]["NEUROFILTERS_WORKER_IDLE_TIMEOUT"] = "soon"
    with pytest.raises(plugin_client.WorkerError, match=r"(?s)exited with status 1 while starting.*NEUROFILTERS_WORKER_IDLE_TIMEOUT must be"):
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
        [sys.executable, "-m", "neurofilters.plugin_host.gimp.worker", "--describe"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert process.returncode == 0, process.stderr
    description = json.loads(process.stdout)
    assert [f["name"] for f in description["filters"]] == list(plugin_host.get_registry().filters)
    assert "tensorflow" not in process.stderr.lower()


def test_manifest_texts_are_the_clis_rendering(runtime_dir):
    """The GIMP dialog's default texts come from plugin_host.format_value, as the CLI's and the docs' do."""
    registry = plugin_host.build_registry()
    description = _worker.describe_filters(registry)
    checked = 0
    for entry in description["filters"]:
        spec = registry.get_filter(entry["name"])
        for data, param in zip(entry["params"], spec.params):
            assert data["default_text"] == plugin_host.format_value(param, param.default), (spec.name, param.name)
            if param.kind == "layers":
                assert data["default"] == data["default_text"]
                checked += 1
    assert checked >= 2  # the test plugin's and at least one built-in layer list
    layers = next(p for p in description["filters"] if p["name"] == "nf-test-invert")["params"][10]
    assert layers["name"] == "layers" and layers["default_text"] == "block1,block2:0.5"  # weight 1 without ":1"


def test_worker_module_does_not_import_keras_or_tensorflow():
    code = "import sys, neurofilters.plugin_host.gimp.worker as w; w.describe_filters(); print(sorted(m for m in ('tensorflow','keras','jax','torch') if m in sys.modules))"
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_sigterm_removes_the_socket(runtime_dir):
    path = runtime_dir / "term.sock"
    process = subprocess.Popen(
        [sys.executable, "-m", "neurofilters.plugin_host.gimp.worker", "--socket", os.fspath(path)], stderr=subprocess.DEVNULL
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


def test_image_parameters_travel_as_pixels_and_extra_outputs_come_back(runtime_dir):
    """A GIMP layer chosen for an image parameter arrives as that layer's pixels; emitted outputs return in order."""
    client = make_client()
    image = _pixels(12, 16, 3)
    overlay = np.random.default_rng(5).integers(0, 256, (6, 5, 4), dtype=np.uint8)  # RGBA, smaller than the image
    header = plugin_client.wire.image_header(5, 6, 4, "u8", name="overlay")
    values = {"mix": 0.25, "frames": 2, "grey_map": True}
    reply, data = client.run(
        "nf-test-blend", values, 3, 16, 12, 3, "u8", image.tobytes(), images=[(header, overlay.tobytes())], given=["mix"]
    )
    spec = plugin_host.get_registry().get_filter("nf-test-blend")
    context = plugin_host.FilterContext(seed=3)
    expected = plugin_host.apply_filter(spec, image.astype(np.float32) / 255, {**values, "overlay": overlay.astype(np.float32) / 255}, context=context)
    assert np.array_equal(np.frombuffer(data, np.uint8).reshape(12, 16, 3), np.round(expected * 255).astype(np.uint8))
    assert [(o["name"], o["width"], o["height"], o["channels"]) for o in reply["outputs"]] == [
        ("frame-00000", 16, 12, 3),
        ("frame-00001", 16, 12, 3),
        ("grey", 16, 12, 1),
    ]
    for output in reply["outputs"]:
        want = np.round(context.outputs[output["name"]] * 255).astype(np.uint8)
        got = np.frombuffer(output["pixels"], np.uint8).reshape(want.shape)
        assert np.array_equal(got, want), output["name"]
    # Without the overlay the corner is untouched: the pixels really were used.
    _, plain = client.run("nf-test-blend", {"mix": 0.25}, 3, 16, 12, 3, "u8", image.tobytes())
    assert np.array_equal(np.frombuffer(plain, np.uint8).reshape(12, 16, 3), image)


def test_images_and_given_are_checked(runtime_dir):
    client = make_client()
    image = _pixels().tobytes()
    mix = plugin_client.wire.image_header(2, 2, 1, "u8", name="mix")
    with pytest.raises(plugin_client.WorkerError, match="Images may only be sent for image parameters. Received: an image named 'mix'"):
        client.run("nf-test-blend", {}, 0, 16, 12, 3, "u8", image, images=[(mix, b"0123")])
    with pytest.raises(plugin_client.WorkerError, match=r"Expected 'given' as a list of the filter's parameter names. Received: given=\['nope'\]"):
        client.run("nf-test-blend", {}, 0, 16, 12, 3, "u8", image, given=["nope"])


def test_layers_of_a_model_for_the_dialogs_list(runtime_dir):
    """The dialog's layer list: the model's good dream targets (aliases first), loaded in the worker."""
    client = make_client()
    reply, _ = client.request({"op": "layers", "model": "nf-test-model"})
    assert reply == {"type": "layers", "model": "nf-test-model", "layers": ["block1", "block2_add"]}
    reply, _ = client.request({"op": "layers", "model": "no-such-model"})
    assert reply["layers"] == [] and "no-such-model" in reply["reason"]
    with pytest.raises(plugin_client.WorkerError, match="Expected a model name. Received: model=None"):
        client.request({"op": "layers"})


def test_given_names_reach_the_filter_where_the_host_tracks_them(runtime_dir):
    """GIMP sends every value; only the names in the request's 'given' count as set by the user."""
    import inspect

    client = make_client()
    reply, _ = client.run("nf-test-blend", {"mix": 0.5, "frames": 0}, 0, 16, 12, 3, "u8", _pixels().tobytes(), given=["mix"])
    names = [output["name"] for output in reply["outputs"]]
    if "given" in inspect.signature(plugin_host.FilterContext).parameters:
        assert names == ["given-mix"]
    else:  # the host has no FilterContext.given yet: the worker checks the names and keeps them back
        assert names == []


def test_the_filters_summary_travels_to_the_plug_in(runtime_dir):
    client = make_client()
    reply, _ = client.run("nf-test-invert", {"amount": 60, "note": "summary"}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert reply["summary"] == ["inverted by 60 %"]
    assert plugin_plan.preview_status(reply).endswith("s; inverted by 60 %")
    reply, _ = client.run("nf-test-invert", {"amount": 60}, 0, 16, 12, 3, "u8", _pixels().tobytes())
    assert reply["summary"] == [] and ";" not in plugin_plan.preview_status(reply)
