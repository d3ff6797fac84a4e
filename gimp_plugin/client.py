"""The worker client: starts the project's worker, talks to it over a Unix socket, never hangs."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import signal
import socket
import struct
import subprocess
import time
from types import ModuleType
from typing import Any, Callable, Optional

#: The wire protocol module, installed beside the plug-in by ``neurofilters gimp install``.
WIRE_NAME = "wire.py"
#: Environment variables of the timeouts (seconds) and their defaults (see :class:`WorkerClient`).
START_TIMEOUT_ENV = "NEUROFILTERS_GIMP_START_TIMEOUT"
HELLO_TIMEOUT_ENV = "NEUROFILTERS_GIMP_HELLO_TIMEOUT"
INACTIVITY_TIMEOUT_ENV = "NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT"
#: A new worker imports neurofilters (not TensorFlow) before it listens: seconds on a busy machine.
WORKER_START_TIMEOUT = 90.0
#: A listening worker greets every connection at once (even while it runs another call).
WORKER_HELLO_TIMEOUT = 20.0
#: A live worker sends a heartbeat every INACTIVITY / HEARTBEAT_DIVISOR seconds during a call.
WORKER_INACTIVITY_TIMEOUT = 60.0
HEARTBEAT_DIVISOR = 4.0
#: Seconds to wait for a killed worker to release its socket.
_KILL_WAIT = 10.0
#: ``progress(fraction, message)``: where a call's progress goes.
Progress = Callable[[float, str], None]


class WorkerError(Exception):
    """The worker could not be reached, crashed, got stuck, or reported an error (the text says which)."""


class _WorkerStuck(Exception):
    """Internal: the worker accepted a connection but stayed silent too long."""


def _load_wire() -> Optional[ModuleType]:
    """The shared wire module: ``wire.py`` beside this file (installed), else the source tree's.

    Loaded by path, not imported by name, so the plug-in never imports the
    project (``plugin_host.gimp.wire`` is the same file in a checkout).
    """
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = (
        os.path.join(here, WIRE_NAME),
        os.path.join(os.path.dirname(here), "plugin_host", "gimp", WIRE_NAME),
    )
    for path in candidates:
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_neurofilters_gimp_wire", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    return None


wire = _load_wire()
PROTOCOL_VERSION = wire.PROTOCOL_VERSION if wire is not None else None


def runtime_directory() -> str:
    """A directory only this user can open: ``$XDG_RUNTIME_DIR/neurofilters`` or ``/tmp/neurofilters-<uid>``.

    Raises:
        WorkerError: It exists with the wrong owner or permissions.
    """
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base and os.path.isdir(base) and os.stat(base).st_uid == uid:
        path = os.path.join(base, "neurofilters")
    else:
        path = os.path.join("/tmp", f"neurofilters-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or info.st_uid != uid or info.st_mode & 0o077:
        raise WorkerError(
            f"The directory {path} must be a directory of uid {uid} with mode 0700. "
            f"Received: uid={info.st_uid}, mode={oct(info.st_mode & 0o777)}. Remove it and try again."
        )
    return path


class _DetachedProcess(subprocess.Popen):
    """A child meant to outlive this object (the worker): no "still running" ResourceWarning."""

    def __del__(self) -> None:
        pass


class WorkerClient:
    """Talks to the project's worker, starting it when no worker is listening.

    The worker (``python -m neurofilters.plugin_host.gimp.worker``, run with the
    manifest's interpreter and environment) listens on a Unix socket in a
    user-only directory and stays alive between calls with its models loaded.
    Never a hang: the client waits at most ``NEUROFILTERS_GIMP_START_TIMEOUT``
    seconds for a new worker to listen, ``NEUROFILTERS_GIMP_HELLO_TIMEOUT`` for
    a worker to greet a connection and ``NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT``
    between two messages of a call (the worker sends progress, or a heartbeat
    every quarter of that time, so only a frozen worker stays silent). A worker
    that overruns is killed, the call fails naming the worker's log, and the
    next call starts a fresh worker. Each variable is read from GIMP's
    environment, else from the manifest's recorded environment.

    Args:
        manifest: The loaded manifest (interpreter, environment, filters).
    """

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.manifest = manifest
        key = manifest.get("_digest") or hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        self.directory = runtime_directory()
        self.socket_path = os.path.join(self.directory, f"w-{key[:16]}.sock")
        self.lock_path = self.socket_path + ".lock"  # held by the live worker, which writes its pid into it
        self.log_path = os.path.join(self.directory, f"w-{key[:16]}.log")
        self.started_worker = False
        self.worker_pid: Optional[int] = None
        self._active: Optional[socket.socket] = None
        self.start_timeout = self._timeout(START_TIMEOUT_ENV, WORKER_START_TIMEOUT)
        self.hello_timeout = self._timeout(HELLO_TIMEOUT_ENV, WORKER_HELLO_TIMEOUT)
        self.inactivity_timeout = self._timeout(INACTIVITY_TIMEOUT_ENV, WORKER_INACTIVITY_TIMEOUT)

    def _timeout(self, variable: str, default: float) -> float:
        """Seconds from GIMP's environment, else the manifest's recorded environment, else ``default``."""
        text = os.environ.get(variable) or str(self.manifest.get("env", {}).get(variable, "") or "")
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 < value < 1e9:
            raise WorkerError(f"{variable} must be a number of seconds > 0. Received: {variable}={text}")
        return value

    # connection ----------------------------------------------------------------------------
    def _try_connect(self, timeout: float | None = None) -> tuple[Optional[socket.socket], Optional[int]]:
        """A connection to a live worker and its pid (hello received), or ``(None, None)`` when none listens.

        Raises:
            _WorkerStuck: A worker accepted the connection but sent no hello within ``timeout`` s.
        """
        timeout = self.hello_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    sock.connect(self.socket_path)
                    break
                except BlockingIOError:  # EAGAIN: the backlog of a worker that accepts nothing is full
                    if time.monotonic() >= deadline:
                        raise TimeoutError() from None
                    time.sleep(0.05)
            hello, _ = wire.recv_message(sock)
        except TimeoutError:
            sock.close()
            raise _WorkerStuck() from None
        except OSError as error:
            sock.close()
            if error.errno in (None, errno.ENOENT, errno.ECONNREFUSED, errno.ECONNRESET, errno.EPIPE):
                return None, None  # nobody listens, or a worker that was exiting: start a new one
            raise WorkerError(f"Cannot connect to the neurofilters worker at {self.socket_path}: {error}") from None
        except wire.ProtocolError as error:
            sock.close()
            raise WorkerError(f"The process at {self.socket_path} is not a neurofilters worker: {error}") from None
        except (ValueError, struct.error):
            sock.close()
            return None, None
        try:
            pid = wire.check_hello(hello)
        except wire.ProtocolError as error:
            sock.close()
            raise WorkerError(str(error)) from None
        return sock, pid or None

    def _locked_pid(self) -> int | None:
        """The pid of the worker holding this socket's lock file, or ``None`` when no process holds it."""
        try:
            handle = open(self.lock_path, "rb")  # noqa: SIM115
        except OSError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: a worker lives, and it wrote its pid first
                try:
                    return int(handle.read().split()[0])
                except (ValueError, IndexError):
                    return None
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None

    def _is_this_worker(self, pid: int) -> bool:
        """Whether ``pid`` runs this socket's worker (checked on its command line where ``/proc`` tells)."""
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except FileNotFoundError:
            return not os.path.isdir("/proc/self")  # no /proc on this system: trust the lock file
        except OSError:
            return False
        return b"neurofilters.plugin_host.gimp.worker" in argv and os.fsencode(self.socket_path) in argv

    def kill_worker(self, pid: int | None = None) -> str:
        """Kill a stuck worker (``pid`` from its hello, else from its lock file) and remove its socket.

        Returns:
            What was done, for the error message.
        """
        candidates = [candidate for candidate in (pid, self._locked_pid()) if candidate]
        pid = next((candidate for candidate in candidates if self._is_this_worker(candidate)), None)
        if pid is None:
            return "Its process is gone already; the next call starts a fresh worker."
        try:
            target = os.getpgid(pid)
            if target == pid:  # started with start_new_session: its own process group (its children too)
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        except OSError as error:
            return f"Killing it (pid {pid}) failed: {error}."
        deadline = time.monotonic() + _KILL_WAIT
        while self._locked_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.02)  # its lock is released once it is gone
        if self._locked_pid() is None:
            try:
                os.unlink(self.socket_path)  # so the next call starts a new worker at once
            except OSError:
                pass
        return f"It was killed (pid {pid}); the next call starts a fresh worker."

    def _spawn(self) -> _DetachedProcess:
        python = self.manifest.get("python", "")
        if not python or not os.path.exists(python):
            raise WorkerError(
                f"The Python recorded at install time does not exist. Received: python={python!r}. "
                "Run 'neurofilters gimp install' from the project's environment and restart GIMP."
            )
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "GIMP", "GI_", "BABL_", "GEGL_"))
        }
        env.update(self.manifest.get("env", {}))
        argv = [python, "-m", "neurofilters.plugin_host.gimp.worker", "--socket", self.socket_path]
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            process = _DetachedProcess(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=self.directory,
                start_new_session=True,
                close_fds=True,
            )
        self.started_worker = True
        return process

    def _log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:]).strip()
        except OSError:
            return ""

    def _log_text(self) -> str:
        tail = self._log_tail()
        return f"Log {self.log_path}" + (f":\n{tail}" if tail else " (empty).")

    def _stuck(self, pid: int | None, what: str) -> WorkerError:
        return WorkerError(f"{what} {self.kill_worker(pid)} {self._log_text()}")

    def connect(self) -> socket.socket:
        """Connect to the worker, starting one if none listens.

        Returns:
            The connection (its hello received); :attr:`worker_pid` is the worker's pid.

        Raises:
            WorkerError: The worker could not be started, or it is stuck (then
                it was killed); the text ends with its log.
        """
        try:
            sock, self.worker_pid = self._try_connect()
        except _WorkerStuck:
            raise self._stuck(
                None,
                f"The neurofilters worker at {self.socket_path} accepted the connection but did not answer "
                f"within {self.hello_timeout:g} s ({HELLO_TIMEOUT_ENV}): it is stuck.",
            ) from None
        if sock is not None:
            return sock
        process = self._spawn()
        deadline = time.monotonic() + self.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                sock, self.worker_pid = self._try_connect(max(min(self.hello_timeout, remaining), 0.05))
            except _WorkerStuck:
                raise self._stuck(
                    None,
                    f"The new neurofilters worker (pid {process.pid}) accepted the connection but did not answer "
                    f"within {min(self.hello_timeout, remaining):g} s: it is stuck.",
                ) from None
            if sock is not None:
                return sock
            status = process.poll()
            if status not in (None, 0):
                raise WorkerError(
                    f"The neurofilters worker ({self.manifest.get('python')} -m neurofilters.plugin_host.gimp.worker) "
                    f"exited with status {status} while starting. {self._log_text()}"
                )
            if time.monotonic() > deadline:
                raise self._stuck(
                    process.pid,
                    f"The neurofilters worker did not start within {self.start_timeout:g} s ({START_TIMEOUT_ENV}).",
                )
            if status == 0 and self._locked_pid() is None:
                # It found another worker's lock and left, but that worker is gone too: start one again.
                process = self._spawn()
            time.sleep(0.02)

    def request(
        self, header: dict[str, Any], payload: bytes = b"", progress: Optional[Progress] = None
    ) -> tuple[dict[str, Any], Any]:
        """Send one request and return the final reply ``(header, payload)``.

        Args:
            header: The request (``{"op": ...}``).
            payload: Raw pixels for ``run``.
            progress: ``progress(fraction, message)`` for the worker's progress messages.

        Raises:
            WorkerError: The worker died, or answered with an error.
        """
        sock = self.connect()
        self._active = sock
        pid = self.worker_pid
        # Every send and every receive must make progress within the inactivity timeout;
        # the worker sends a heartbeat four times as often while it works.
        sock.settimeout(self.inactivity_timeout)
        header = {**header, "heartbeat": self.inactivity_timeout / HEARTBEAT_DIVISOR}
        try:
            try:
                try:
                    wire.send_message(sock, header, payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The worker refuses a bad request after reading its header (a wrong pixel count) and
                    # closes while the pixels are still on their way: its answer is waiting to be read.
                    pass
                while True:
                    reply, data = wire.recv_message(sock)
                    kind = reply.get("type")
                    if kind == "heartbeat":
                        continue
                    if kind == "progress":
                        if progress is not None:
                            progress(float(reply.get("fraction", 0.0)), str(reply.get("message", "")))
                        continue
                    break
            except TimeoutError:
                raise self._stuck(
                    pid,
                    f"The neurofilters worker (pid {pid}) sent nothing for {self.inactivity_timeout:g} s "
                    f"({INACTIVITY_TIMEOUT_ENV}), neither progress nor a heartbeat: it is stuck (frozen, or "
                    "short of memory and swapping).",
                ) from None
            except (OSError, ValueError, struct.error) as error:
                raise WorkerError(
                    f"The neurofilters worker stopped unexpectedly ({type(error).__name__}: {error}). "
                    f"The next call starts a fresh worker. {self._log_text()}"
                ) from None
        finally:
            self._active = None
            sock.close()
        if reply.get("type") == "error":
            raise WorkerError(str(reply.get("message", "The worker reported an error without a message.")))
        return reply, data

    def ping(self) -> dict[str, Any]:
        """The worker's status (pid, calls served, models loaded...)."""
        return self.request({"op": "ping"})[0]

    def shutdown(self) -> None:
        """Ask a running worker to exit (does not start one)."""
        try:
            sock, _ = self._try_connect()
        except _WorkerStuck:
            self.kill_worker()
            return
        if sock is None:
            return
        try:
            sock.settimeout(self.inactivity_timeout)
            wire.send_message(sock, {"op": "shutdown", "heartbeat": self.inactivity_timeout / HEARTBEAT_DIVISOR})
            while wire.recv_message(sock)[0].get("type") == "heartbeat":
                pass  # it finishes a running filter first
        except (OSError, ValueError, struct.error):
            pass
        finally:
            sock.close()

    def run(
        self,
        filter_name: str,
        values: dict[str, Any],
        seed: int,
        width: int,
        height: int,
        channels: int,
        dtype: str,
        pixels: bytes,
        progress: Optional[Progress] = None,
        images: Any = (),
        given: Any = None,
    ) -> tuple[dict[str, Any], Any]:
        """Run a filter on raw pixels.

        Args:
            filter_name, values, seed: The filter and its values (as GIMP hands them over).
            width, height, channels, dtype, pixels: The image (row-major, ``u8`` or ``f32``).
            progress: ``progress(fraction, message)``.
            images: Image parameters given as pixels: ``(image header, pixels)`` pairs, the
                header from ``wire.image_header(..., name=PARAM)``.
            given: Names of the parameters the user set explicitly (``None``: unknown).

        Returns:
            ``(reply, pixels)``: the reply has ``width``, ``height``, ``channels``
            and ``dtype`` of the returned pixels, ``compute_seconds``, and
            ``outputs``: the extra outputs' image headers, each with its
            ``pixels`` added (a memoryview).

        Raises:
            WorkerError: A parameter was rejected, the filter failed or the worker died.
        """
        main = wire.image_header(width, height, channels, dtype)
        try:
            headers, payload = wire.pack_images([(main, pixels), *images])
        except wire.ProtocolError as error:
            raise WorkerError(str(error)) from None
        header = {"op": "run", "filter": filter_name, "values": values, "seed": seed, **main, "images": headers[1:]}
        if given is not None:
            header["given"] = sorted(given)
        reply, data = self.request(header, payload, progress)
        outputs = reply.get("outputs") or []
        try:
            parts = wire.split_images(data, [wire.image_header(reply["width"], reply["height"], reply["channels"], reply["dtype"]), *outputs])
        except (wire.ProtocolError, KeyError) as error:
            raise WorkerError(f"The worker's result is malformed: {error}") from None
        reply["outputs"] = [{**output, "pixels": part} for output, part in zip(outputs, parts[1:])]
        return reply, parts[0]

    def cancel(self) -> None:
        """Stop the call in progress from another thread (the worker stops the filter at its next progress)."""
        sock = self._active
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
