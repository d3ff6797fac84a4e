#!/usr/bin/env python3
"""neurofilters for GIMP 3: every registered neural filter under Filters > Neural.

``neurofilters gimp install`` copies this file to
``<GIMP profile>/plug-ins/neurofilters/neurofilters.py`` and writes
``manifest.json`` beside it: the filters with their parameter declarations,
the project's Python interpreter and the environment its worker needs.

This file runs inside GIMP's own Python, which has neither NumPy nor Keras: it
uses the standard library and GObject introspection only. At GIMP start-up it
registers one procedure per filter from the manifest (no TensorFlow import,
milliseconds). When a filter runs it reads the drawable's pixels as raw bytes,
sends them to the project's worker (``python -m neurofilters.plugin_host.gimp.worker``) over a
Unix socket in a user-only directory, shows the worker's progress and writes
the result back through GIMP's shadow buffer, so the selection applies and
the whole call is one undo step. The worker stays alive between calls with its
models loaded and exits after an idle timeout.

Never a hang: the plug-in waits at most ``NEUROFILTERS_GIMP_START_TIMEOUT``
seconds for a new worker to listen, ``NEUROFILTERS_GIMP_HELLO_TIMEOUT`` for a
worker to greet a connection and ``NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT``
between two messages of a call (the worker sends progress, or a heartbeat
every quarter of that time, so only a frozen worker stays silent). A worker
that overruns is killed, the call fails naming the worker's log, and the next
call starts a fresh worker. Each variable is read from GIMP's environment, else
from the manifest's recorded environment (set it when running ``neurofilters
gimp install``).

Nothing in this module imports ``gi`` until :func:`main` runs, so its worker
client can be used (and tested) from any Python.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import errno  # noqa: E402
import fcntl  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402

PLUG_IN_NAME = "neurofilters"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
#: The wire protocol module, installed beside this file by ``neurofilters gimp install``.
WIRE_NAME = "wire.py"
PROCEDURE_PREFIX = "neurofilters-"
MENU_ROOT = "<Image>/Filters/Neural"
#: Arguments every procedure has besides the filter's own parameters.
SEED_ARGUMENT = "seed"
OUTPUT_ARGUMENT = "output-mode"
OUTPUT_MODES = (
    ("replace", "Replace the layer", "Write the result into the active layer (the selection applies)."),
    ("new-layer", "As a new layer", "Put the result on a new layer above the active one (the selection applies)."),
)
#: GIMP argument names a filter parameter may not take (it gets the suffix "-param").
RESERVED_ARGUMENTS = ("run-mode", "image", "drawables", SEED_ARGUMENT, OUTPUT_ARGUMENT)
#: Environment variable: a file to which registration timings are appended (benchmarks).
TIMING_ENV = "NEUROFILTERS_GIMP_TIMING"
#: Environment variable: a file to which every filter call is appended as JSON (troubleshooting).
LOG_ENV = "NEUROFILTERS_GIMP_LOG"
#: Dialogs with more parameters than this per column get side-by-side columns (at most DIALOG_MAX_COLUMNS).
DIALOG_ROWS = 12
DIALOG_MAX_COLUMNS = 3
#: Environment variables of the timeouts (seconds) and their defaults (see the module's docstring).
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
_INT_LIMIT = 2**31 - 1
_FLOAT_LIMIT = 1e15
_NICK_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
#: Every parameter kind of ``neurofilters.plugin_host.PARAM_KINDS`` and the GIMP argument that carries it.
KIND_TO_ARGUMENT = {
    "int": "int",
    "float": "double",
    "bool": "boolean",
    "choice": "choice",
    "string": "string",
    "path": "file",
    "image": "drawable",
    "colour": "color",
    "class_label": "string",
    "layer": "string",
    "layers": "string",
    "model": "choice",
}


class WorkerError(Exception):
    """The worker could not be reached, crashed, got stuck, or reported an error (the text says which)."""


class _WorkerStuck(Exception):
    """Internal: the worker accepted a connection but stayed silent too long."""


def _load_wire():
    """The shared wire module: ``wire.py`` beside this file (installed), else the source tree's.

    Loaded by path, not imported by name, so this file never imports the
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


# -- the manifest -----------------------------------------------------------------------------
def plugin_directory() -> str:
    """The folder this plug-in file was installed in."""
    return os.path.dirname(os.path.abspath(__file__))


def load_manifest(directory: str | None = None) -> dict:
    """Read ``manifest.json`` beside the plug-in.

    Raises:
        WorkerError: It is missing, unreadable or of another format.
    """
    path = os.path.join(directory or plugin_directory(), MANIFEST_NAME)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        manifest = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as error:
        raise WorkerError(
            f"Cannot read the neurofilters manifest {path}: {error}. "
            "Run 'neurofilters gimp install' and restart GIMP."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        received = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise WorkerError(
            f"The neurofilters manifest {path} has format {received!r}; this plug-in reads format "
            f"{MANIFEST_FORMAT}. Run 'neurofilters gimp install' again and restart GIMP."
        )
    if wire is None:
        raise WorkerError(
            f"The neurofilters wire module {os.path.join(plugin_directory(), WIRE_NAME)} is missing. "
            "Run 'neurofilters gimp install' again and restart GIMP."
        )
    manifest["_digest"] = hashlib.sha256(raw).hexdigest()
    return manifest


def procedure_name(filter_name: str) -> str:
    """The PDB procedure of a filter: ``neurofilters-<filter name>``."""
    return PROCEDURE_PREFIX + filter_name


def argument_name(param_name: str) -> str:
    """The GIMP argument of a filter parameter: dashes for underscores, reserved names suffixed."""
    name = param_name.replace("_", "-")
    return name + "-param" if name in RESERVED_ARGUMENTS else name


def choice_nicks(values: list) -> list:
    """GIMP choice nicks for choice values: the value itself when it is a valid nick, else ``choice-N``."""
    return [value if _NICK_RE.match(value) else f"choice-{index}" for index, value in enumerate(values)]


def model_choices(param: dict, manifest: dict) -> list:
    """The models offered for a ``model`` parameter: the registered ones, plus the default."""
    names = [model["name"] for model in manifest.get("models", [])]
    if param["default"] not in names:
        names.insert(0, param["default"])
    return names


def default_output_mode(filter_info: dict) -> str:
    """``new-layer`` for analysis filters (output ``layer``), else ``replace``."""
    return "new-layer" if filter_info.get("output") == "layer" else "replace"


# -- the worker channel ---------------------------------------------------------------------
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

    Args:
        manifest: The loaded manifest (interpreter, environment, filters).
    """

    def __init__(self, manifest: dict) -> None:
        self.manifest = manifest
        key = manifest.get("_digest") or hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        self.directory = runtime_directory()
        self.socket_path = os.path.join(self.directory, f"w-{key[:16]}.sock")
        self.lock_path = self.socket_path + ".lock"  # held by the live worker, which writes its pid into it
        self.log_path = os.path.join(self.directory, f"w-{key[:16]}.log")
        self.started_worker = False
        self.worker_pid = None
        self._active = None
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
    def _try_connect(self, timeout: float | None = None) -> tuple:
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

    def request(self, header: dict, payload: bytes = b"", progress=None) -> tuple:
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
                wire.send_message(sock, header, payload)
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

    def ping(self) -> dict:
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
        values: dict,
        seed: int,
        width: int,
        height: int,
        channels: int,
        dtype: str,
        pixels: bytes,
        progress=None,
        images=(),
        given=None,
    ) -> tuple:
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


def _log_call(entry: dict) -> None:
    target = os.environ.get(LOG_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


def _timing(event: str) -> None:
    target = os.environ.get(TIMING_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(f"{event} {1000.0 * (time.perf_counter() - _STARTED):.2f}\n")


# -- GIMP -------------------------------------------------------------------------------------
def main() -> None:
    """Run as GIMP's plug-in (GIMP starts this file with its own arguments)."""
    import gi

    gi.require_version("Gimp", "3.0")
    gi.require_version("Gegl", "0.4")
    gi.require_version("Babl", "0.1")
    from gi.repository import Babl, Gegl, Gimp, GLib, GObject

    _timing("imports")
    rw = GObject.ParamFlags.READWRITE
    colour_format = "R'G'B'A double"

    def load_or_error() -> tuple:
        try:
            return load_manifest(), None
        except WorkerError as error:
            return None, str(error)

    def make_colour(rgb: list):
        Babl.init()  # Babl formats need babl; cheaper than Gegl.init(), which loads every GEGL module
        colour = Gegl.Color.new("black")
        data = struct.pack("4d", float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)
        colour.set_bytes(Babl.format(colour_format), GLib.Bytes.new(data))
        return colour

    def read_colour(colour, default: list) -> list:
        if colour is None:
            return list(default)
        red, green, blue, alpha = struct.unpack("4d", colour.get_bytes(Babl.format(colour_format)).get_data())
        if alpha == 0.0:
            # GIMP 3.0.4 loses colour defaults outside the plug-in's own process: a caller
            # that leaves the argument unset sends transparent black. Our colour arguments
            # have no alpha, so a transparent colour means "not given": use the default.
            return list(default)
        return [min(max(red, 0.0), 1.0), min(max(green, 0.0), 1.0), min(max(blue, 0.0), 1.0)]

    def add_param(procedure, param: dict, manifest: dict) -> None:
        name = argument_name(param["name"])
        label = param.get("label") or param["name"]
        blurb = f"{param['help']} ({param.get('allowed', '')})" if param.get("allowed") else param["help"]
        kind = param["kind"]
        default = param["default"]
        if kind == "int":
            low = int(param["minimum"]) if param.get("minimum") is not None else -_INT_LIMIT
            high = int(param["maximum"]) if param.get("maximum") is not None else _INT_LIMIT
            procedure.add_int_argument(name, label, blurb, low, high, int(default), rw)
        elif kind == "float":
            low = float(param["minimum"]) if param.get("minimum") is not None else -_FLOAT_LIMIT
            high = float(param["maximum"]) if param.get("maximum") is not None else _FLOAT_LIMIT
            procedure.add_double_argument(name, label, blurb, low, high, float(default), rw)
        elif kind == "bool":
            procedure.add_boolean_argument(name, label, blurb, bool(default), rw)
        elif kind in ("choice", "model"):
            values = list(param["choices"]) if kind == "choice" else model_choices(param, manifest)
            nicks = choice_nicks(values)
            choice = Gimp.Choice.new()
            for index, (nick, value) in enumerate(zip(nicks, values)):
                choice.add(nick, index, value, "")
            procedure.add_choice_argument(name, label, blurb, choice, nicks[values.index(default)], rw)
        elif kind in ("path", "image"):
            procedure.add_file_argument(name, label, blurb, Gimp.FileChooserAction.OPEN, True, None, rw)
        elif kind == "colour":
            procedure.add_color_argument(name, label, blurb, False, make_colour(default), rw)
        else:  # string, class_label, layer, layers (and any kind newer than this plug-in)
            procedure.add_string_argument(name, label, blurb, str(param.get("default_text", default)), rw)

    def read_param(config, param: dict, manifest: dict):
        name = argument_name(param["name"])
        kind = param["kind"]
        value = config.get_property(name)
        if kind in ("choice", "model"):
            values = list(param["choices"]) if kind == "choice" else model_choices(param, manifest)
            nicks = choice_nicks(values)
            return values[nicks.index(value)] if value in nicks else value
        if kind in ("path", "image"):
            return (value.get_path() or "") if value is not None else ""
        if kind == "colour":
            return read_colour(value, param["default"])
        if value is None and kind not in ("int", "float", "bool"):
            return ""  # GIMP hands an empty string over as None
        return value

    def fill_dialog(dialog, info: dict) -> None:
        """GIMP's generated dialog; many parameters go into side-by-side columns, so it fits a screen."""
        names = [argument_name(param["name"]) for param in info["params"]]
        columns = min(DIALOG_MAX_COLUMNS, -(-len(names) // DIALOG_ROWS))
        if columns <= 1:
            dialog.fill(None)
            return
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk

        per_column = -(-len(names) // columns)
        ids = []
        for index in range(columns):
            ids.append(f"neurofilters-column-{index}")
            dialog.fill_box(ids[-1], names[index * per_column : (index + 1) * per_column])
        row = dialog.fill_box("neurofilters-columns", ids)
        row.set_orientation(Gtk.Orientation.HORIZONTAL)
        row.set_spacing(18)
        dialog.fill(["neurofilters-columns", SEED_ARGUMENT, OUTPUT_ARGUMENT])

    def error_values(procedure, message: str):
        return procedure.new_return_values(
            Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
        )

    def pixel_formats(image, drawable) -> tuple:
        precision = image.get_precision()
        eight_bit = precision in (Gimp.Precision.U8_NON_LINEAR, Gimp.Precision.U8_PERCEPTUAL)
        dtype = "u8" if eight_bit else "f32"
        suffix = " u8" if eight_bit else " float"
        base = "Y'" if drawable.is_gray() else "R'G'B'"
        alpha = drawable.has_alpha()
        channels = (1 if drawable.is_gray() else 3) + (1 if alpha else 0)
        return base + ("A" if alpha else "") + suffix, channels, dtype, suffix

    class NeurofiltersPlugIn(Gimp.PlugIn):
        """One GIMP procedure per filter of the manifest."""

        manifest = None
        manifest_error = None

        def _manifest(self):
            if self.manifest is None and self.manifest_error is None:
                type(self).manifest, type(self).manifest_error = load_or_error()
            return self.manifest

        def do_set_i18n(self, name):
            return False

        def do_query_procedures(self):
            manifest = self._manifest()
            _timing("query")
            if manifest is None:
                return [PROCEDURE_PREFIX + "setup-problem"]
            return [procedure_name(item["name"]) for item in manifest.get("filters", [])]

        def do_create_procedure(self, name):
            manifest = self._manifest()
            if manifest is None:
                procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_setup_problem, None)
                procedure.set_image_types("*")
                procedure.set_menu_label("neurofilters setup problem...")
                procedure.add_menu_path(MENU_ROOT)
                procedure.set_documentation("Explains why no neural filter is available", self.manifest_error, name)
                procedure.set_attribution("neurofilters", "neurofilters", "2025")
                return procedure
            info = next((item for item in manifest["filters"] if procedure_name(item["name"]) == name), None)
            if info is None:
                return None
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_filter, info)
            procedure.set_image_types("RGB*, GRAY*")
            procedure.set_sensitivity_mask(
                Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
            )
            procedure.set_menu_label(info["title"] + "...")
            procedure.add_menu_path(f"{MENU_ROOT}/{info['category']}")
            procedure.set_documentation(info["summary"], info.get("description") or info["summary"], name)
            procedure.set_attribution("neurofilters", "neurofilters", "2025")
            for param in info["params"]:
                add_param(procedure, param, manifest)
            procedure.add_int_argument(
                SEED_ARGUMENT, "Seed", "Seed of the filter's randomness: same seed, same result.", 0, _INT_LIMIT, 0, rw
            )
            modes = Gimp.Choice.new()
            for index, (nick, label, help_text) in enumerate(OUTPUT_MODES):
                modes.add(nick, index, label, help_text)
            procedure.add_choice_argument(
                OUTPUT_ARGUMENT, "Output", "Replace the layer, or add the result as a new layer.", modes, default_output_mode(info), rw
            )
            _timing("create " + name)
            return procedure

        def run_setup_problem(self, procedure, run_mode, image, drawables, config, data):
            return error_values(procedure, self.manifest_error or "neurofilters is not set up.")

        def run_filter(self, procedure, run_mode, image, drawables, config, info):
            if run_mode == Gimp.RunMode.INTERACTIVE:
                gi.require_version("GimpUi", "3.0")
                from gi.repository import GimpUi

                GimpUi.init(PLUG_IN_NAME)
                dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
                fill_dialog(dialog, info)
                accepted = dialog.run()
                dialog.destroy()
                if not accepted:
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            manifest = self._manifest()
            try:
                values = {param["name"]: read_param(config, param, manifest) for param in info["params"]}
                seed = int(config.get_property(SEED_ARGUMENT))
                new_layer = config.get_property(OUTPUT_ARGUMENT) == "new-layer"
                if not drawables:
                    raise WorkerError("No layer is selected. Select the layer to filter and try again.")
                client = WorkerClient(manifest)
            except WorkerError as error:
                return error_values(procedure, str(error))
            Gimp.progress_init(info["title"])
            image.undo_group_start()
            try:
                for index, drawable in enumerate(drawables):
                    self.filter_drawable(image, drawable, info, values, seed, new_layer, client, index, len(drawables))
            except WorkerError as error:
                return error_values(procedure, f"{info['title']}: {error}")
            except Exception as error:  # a bug here must still end as a GIMP error, not a crash
                return error_values(
                    procedure,
                    f"{info['title']}: internal error of the neurofilters plug-in: {type(error).__name__}: {error}. "
                    "Please report it with the text of this message.",
                )
            finally:
                image.undo_group_end()
                Gimp.progress_end()
            Gimp.displays_flush()
            return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())

        def filter_drawable(self, image, drawable, info, values, seed, new_layer, client, index, count):
            if drawable.is_group():
                raise WorkerError(
                    f"{drawable.get_name()!r} is a layer group; select a pixel layer (or merge the group) and try again."
                )
            intersects, x, y, width, height = drawable.mask_intersect()
            if not intersects or width <= 0 or height <= 0:
                return  # the selection does not touch this drawable: nothing to change
            in_format, channels, dtype, suffix = pixel_formats(image, drawable)
            rect = Gegl.Rectangle.new(x, y, width, height)
            pixels = drawable.get_buffer().get(rect, 1.0, in_format, Gegl.AbyssPolicy.CLAMP)
            last_text = [""]

            def progress(fraction, message):
                Gimp.progress_update((index + min(max(fraction, 0.0), 1.0)) / count)
                if message and message != last_text[0]:
                    last_text[0] = message
                    Gimp.progress_set_text(f"{info['title']}: {message}")

            _log_call(
                {
                    "filter": info["name"],
                    "values": values,
                    "seed": seed,
                    "region": [x, y, width, height],
                    "format": in_format,
                    "drawable": drawable.get_name(),
                    "socket": client.socket_path,
                }
            )
            reply, data = client.run(info["name"], values, seed, width, height, channels, dtype, bytes(pixels), progress)
            out_format = ("R'G'B'A" if reply["channels"] == 4 else "R'G'B'") + suffix
            name = f"{drawable.get_name()} ({info['title']})"
            if (reply["width"], reply["height"]) == (width, height):
                target = drawable
                if new_layer:
                    if not drawable.is_layer():
                        raise WorkerError("'As a new layer' needs a layer; a channel or mask is selected. Choose 'Replace'.")
                    target = drawable.copy()
                    target.set_name(name)
                    image.insert_layer(target, drawable.get_parent(), image.get_item_position(drawable))
                shadow = target.get_shadow_buffer()
                shadow.set(rect, out_format, bytes(data))
                shadow.flush()
                target.merge_shadow(True)
                target.update(x, y, width, height)
            else:  # a different-sized analysis (e.g. a table of activations): always a new layer
                gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
                alpha = reply["channels"] == 4
                kind = {
                    (False, False): Gimp.ImageType.RGB_IMAGE,
                    (False, True): Gimp.ImageType.RGBA_IMAGE,
                    (True, False): Gimp.ImageType.GRAY_IMAGE,
                    (True, True): Gimp.ImageType.GRAYA_IMAGE,
                }[(gray, alpha)]
                layer = Gimp.Layer.new(image, name, reply["width"], reply["height"], kind, 100.0, Gimp.LayerMode.NORMAL)
                parent = drawable.get_parent() if drawable.is_layer() else None
                position = image.get_item_position(drawable) if drawable.is_layer() else 0
                image.insert_layer(layer, parent, position)
                offset_x, offset_y = drawable.get_offsets()[1:] if drawable.is_layer() else (0, 0)
                layer.set_offsets(offset_x + x, offset_y + y)
                buffer = layer.get_buffer()
                buffer.set(Gegl.Rectangle.new(0, 0, reply["width"], reply["height"]), out_format, bytes(data))
                buffer.flush()
                layer.update(0, 0, reply["width"], reply["height"])

    Gimp.main(NeurofiltersPlugIn.__gtype__, sys.argv)


if __name__ == "__main__":
    main()
