#!/usr/bin/env python3
"""neurofilters for GIMP 3: every registered neural filter under Filters > Neural.

``neurofilters gimp install`` copies this file to
``<GIMP profile>/plug-ins/neurofilters/neurofilters.py``, the wire protocol
module it shares with the worker (``plugin_host/gimp/wire.py``) beside it as
``wire.py``, and writes ``manifest.json``: the filters with their parameter
declarations, the project's Python interpreter and the environment its worker
needs.

This file runs inside GIMP's own Python, which has neither NumPy nor Keras: it
uses the standard library and GObject introspection only. At GIMP start-up it
registers one procedure per filter from the manifest (no TensorFlow import,
milliseconds). When a filter runs it reads the drawable's pixels as raw bytes,
sends them (with the pixels of layers chosen for image parameters) to the
project's worker (``python -m neurofilters.plugin_host.gimp.worker``) over a
Unix socket in a user-only directory, shows the worker's progress and writes
the result back through GIMP's shadow buffer, so the selection applies and
the whole call is one undo step; extra outputs become layers above it.

The file is in layers: the worker client and the dialog's plan (sections from
``group``/``advanced``, widgets, mnemonics, what counts as "given") are plain
Python; :class:`GimpHost` holds the few calls into GIMP (read pixels and the
selection, write pixels, add a layer, progress, error), like G'MIC-Qt's host
API; :class:`FilterDialog`, :func:`run_filter` and :func:`main` put them together. The worker stays alive between calls with its
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
#: Title of the dialog's expander holding the parameters declared ``advanced``.
ADVANCED_TITLE = "Advanced settings"
#: Title of the frame of parameters declared ``advanced`` without a group.
OTHER_GROUP = "Other"
#: Numbers get a slider when both bounds are declared and, for integers, at most this many values lie between.
SLIDER_MAX_STEPS = 1000
#: Mnemonic letters the procedure dialog's own buttons use (_Reset, _Cancel, _OK, _Load/_Save Settings)
#: and the preview button (_Preview); parameter labels avoid them.
RESERVED_MNEMONICS = "rcolsp"
#: Longest side, in pixels, of the dialog's preview.
PREVIEW_SIZE = 256
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
    name = param_name.rstrip("_").replace("_", "-")  # class_ -> class (a keyword in Python only)
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


# -- the dialog's plan (no GIMP needed) -------------------------------------------------------
def dialog_sections(info: dict) -> dict:
    """Where each parameter goes in the dialog, from its declared ``group`` and ``advanced``.

    Returns:
        ``{"essential": [...], "groups": [(title, [...]), ...], "advanced": [(title, [...]), ...]}``
        of parameter declarations, in declaration order: parameters without a group
        are the essential controls shown first, the others go into one frame per
        group, and the ``advanced`` ones into frames (by group) inside a folded
        expander.
    """
    essential, groups, advanced = [], {}, {}
    for param in info["params"]:
        group = param.get("group") or ""
        if param.get("advanced"):
            advanced.setdefault(group or OTHER_GROUP, []).append(param)
        elif group:
            groups.setdefault(group, []).append(param)
        else:
            essential.append(param)
    return {"essential": essential, "groups": list(groups.items()), "advanced": list(advanced.items())}


def widget_kind(param: dict) -> str:
    """The dialog widget of a parameter.

    One of ``slider``, ``spin``, ``check``, ``combo``, ``drawable``, ``file``,
    ``colour``, ``layers`` (a text field with a list of the model's good layers)
    or ``entry``.
    """
    kind = param["kind"]
    if kind in ("int", "float"):
        low, high = param.get("minimum"), param.get("maximum")
        if low is None or high is None:
            return "spin"
        return "slider" if kind == "float" or high - low <= SLIDER_MAX_STEPS else "spin"
    return {
        "bool": "check",
        "choice": "combo",
        "model": "combo",
        "image": "drawable",
        "path": "file",
        "colour": "colour",
        "layer": "layers",
        "layers": "layers",
    }.get(kind, "entry")


def increments(param: dict) -> tuple:
    """``(step, page, digits)`` of a number's spin button or slider, from its bounds (or default)."""
    low, high = param.get("minimum"), param.get("maximum")
    if low is not None and high is not None and high > low:
        span = float(high - low)
    else:
        span = max(abs(float(param.get("default") or 0)) * 10.0, 100.0)
    if param["kind"] == "int":
        step = 1.0
        page = float(max(1, min(10, int(span // 10))))
        return step, max(page, step), 0
    step = 10.0 ** (len(str(int(span / 100.0))) - 1) if span >= 100.0 else 10.0 ** _floor_log10(span / 100.0)
    digits = max(0, -_floor_log10(step))
    default = param.get("default")
    if isinstance(default, float) and default:  # enough digits to show the declared default (0.015)
        digits = max(digits, min(6, -_floor_log10(abs(default)) + 1))
    return step, step * 10.0, digits


def _floor_log10(value: float) -> int:
    """``floor(log10(value))`` for ``value > 0`` without float surprises at powers of ten."""
    exponent = 0
    while value >= 10.0:
        value /= 10.0
        exponent += 1
    while value < 1.0 - 1e-12:
        value *= 10.0
        exponent -= 1
    return exponent


def mnemonic_labels(labels: list, reserved: str = RESERVED_MNEMONICS) -> list:
    """Labels with a keyboard mnemonic (``_``) on a letter no other label or dialog button uses.

    A word's first letter is preferred, then any other letter or digit; a label
    with no free character stays without one. Literal underscores are doubled.
    """
    used = set(reserved.lower())
    result = []
    for label in labels:
        text = label.replace("_", "__")
        positions = [i for i, char in enumerate(label) if char.isalnum() and (i == 0 or not label[i - 1].isalnum())]
        positions += [i for i, char in enumerate(label) if char.isalnum() and i not in positions]
        choice = next((i for i in positions if label[i].lower() not in used), None)
        if choice is None:
            result.append(text)
            continue
        used.add(label[choice].lower())
        shift = label[:choice].count("_")  # doubled underscores before the letter move it right
        result.append(text[: choice + shift] + "_" + text[choice + shift :])
    return result


def given_names(info: dict, values: dict, touched=()) -> list:
    """The parameters a GIMP call counts as set explicitly (they win over a preset's values).

    GIMP always sends every value, so "given" is decided here: a value that
    differs from its declared default (set in this dialog, remembered by GIMP
    from an earlier call, or passed by a script), a layer chosen for an image
    parameter, and any control the user touched in the dialog even if it ends
    on the default again (``touched``: parameter names).
    """
    given = []
    for param in info["params"]:
        name = param["name"]
        value = values.get(name)
        default = param.get("default")
        if name in touched:
            changed = True
        elif param["kind"] == "image":
            changed = bool(value)
        elif param["kind"] == "colour":
            changed = value is not None and any(abs(float(a) - float(b)) > 0.5 / 255 for a, b in zip(value, default))
        elif param["kind"] in ("string", "class_label", "layer", "layers", "path"):
            changed = str(value if value is not None else "") != str(param.get("default_text", default) or "")
        elif param["kind"] == "float":
            changed = value is not None and abs(float(value) - float(default)) > 1e-9 * max(1.0, abs(float(default)))
        else:
            changed = value != default
        if changed:
            given.append(name)
    return given


def preview_status(reply: dict) -> str:
    """The dialog's line after a preview: its size and time, then what the filter reported (``lite0 sees: ...``)."""
    text = f"Preview {reply['width']}x{reply['height']} in {reply.get('compute_seconds', 0):.1f} s"
    return "; ".join([text, *(reply.get("summary") or ())])


def missing_required(info: dict, chosen) -> str:
    """What to say when a required image parameter has no layer chosen (``""`` when none is missing).

    Args:
        info: The filter's manifest entry.
        chosen: The names of the image parameters that have a layer.
    """
    missing = [param for param in info["params"] if param.get("required") and param["name"] not in chosen]
    if not missing:
        return ""
    labels = " and ".join(repr(param.get("label") or param["name"]) for param in missing)
    return f"{info['title']} needs {labels}: choose a layer for it (open an image file as a layer first); nothing was changed."


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


# -- GIMP: the host functions ---------------------------------------------------------------
#: The GObject-introspection modules, imported by :func:`main` only (``gi.Gimp``, ``gi.Gegl`` ...).
gi = None


def _import_gi():
    """Import GIMP's libraries (only ever inside GIMP)."""
    import types

    import gi as introspection

    introspection.require_version("Gimp", "3.0")
    introspection.require_version("Gegl", "0.4")
    introspection.require_version("Babl", "0.1")
    from gi.repository import Babl, Gegl, Gimp, GLib, GObject

    return types.SimpleNamespace(require_version=introspection.require_version, Babl=Babl, Gegl=Gegl, Gimp=Gimp, GLib=GLib, GObject=GObject)


_COLOUR_FORMAT = "R'G'B'A double"


def make_colour(rgb: list):
    """A ``Gegl.Color`` from three floats in [0, 1]."""
    gi.Babl.init()  # Babl formats need babl; cheaper than Gegl.init(), which loads every GEGL module
    colour = gi.Gegl.Color.new("black")
    data = struct.pack("4d", float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)
    colour.set_bytes(gi.Babl.format(_COLOUR_FORMAT), gi.GLib.Bytes.new(data))
    return colour


def read_colour(colour, default: list) -> list:
    """Three floats in [0, 1] from a ``Gegl.Color`` (the default for an unset one)."""
    if colour is None:
        return list(default)
    red, green, blue, alpha = struct.unpack("4d", colour.get_bytes(gi.Babl.format(_COLOUR_FORMAT)).get_data())
    if alpha == 0.0:
        # GIMP 3.0.4 loses colour defaults outside the plug-in's own process: a caller
        # that leaves the argument unset sends transparent black. Our colour arguments
        # have no alpha, so a transparent colour means "not given": use the default.
        return list(default)
    return [min(max(red, 0.0), 1.0), min(max(green, 0.0), 1.0), min(max(blue, 0.0), 1.0)]


def add_argument(procedure, param: dict, manifest: dict) -> None:
    """Declare one filter parameter as a GIMP procedure argument (see ``KIND_TO_ARGUMENT``)."""
    rw = gi.GObject.ParamFlags.READWRITE
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
        choice = gi.Gimp.Choice.new()
        for index, (nick, value) in enumerate(zip(nicks, values)):
            choice.add(nick, index, value, "")
        procedure.add_choice_argument(name, label, blurb, choice, nicks[values.index(default)], rw)
    elif kind == "image":
        procedure.add_drawable_argument(name, label, blurb + " Choose a layer of any open image, or none.", True, rw)
    elif kind == "path":
        procedure.add_file_argument(name, label, blurb, gi.Gimp.FileChooserAction.OPEN, True, None, rw)
    elif kind == "colour":
        procedure.add_color_argument(name, label, blurb, False, make_colour(default), rw)
    else:  # string, class_label, layer, layers (and any kind newer than this plug-in)
        procedure.add_string_argument(name, label, blurb, str(param.get("default_text", default)), rw)


def read_values(config, info: dict, manifest: dict) -> tuple:
    """The filter's values from a procedure config, and the drawables chosen for image parameters.

    Returns:
        ``(values, drawables)``: values as the worker takes them (an image
        parameter's value is ``""``; its pixels travel separately), and
        ``{param name: drawable}`` for the image parameters that have one.
    """
    values, drawables = {}, {}
    for param in info["params"]:
        name = argument_name(param["name"])
        kind = param["kind"]
        value = config.get_property(name)
        if kind in ("choice", "model"):
            choices = list(param["choices"]) if kind == "choice" else model_choices(param, manifest)
            nicks = choice_nicks(choices)
            value = choices[nicks.index(value)] if value in nicks else value
        elif kind == "image":
            if value is not None:
                drawables[param["name"]] = value
            value = ""
        elif kind == "path":
            value = (value.get_path() or "") if value is not None else ""
        elif kind == "colour":
            value = read_colour(value, param["default"])
        elif value is None and kind not in ("int", "float", "bool"):
            value = ""  # GIMP hands an empty string over as None
        values[param["name"]] = value
    return values, drawables


class GimpHost:
    """The few things the plug-in asks of GIMP, like G'MIC-Qt's host API.

    Read pixels and the selection, write pixels (through the shadow buffer, so
    the selection applies and the call is one undo step), add a layer, report
    progress and errors. Everything else (the worker, the dialog's plan) is
    plain Python.
    """

    def __init__(self, title: str, count: int = 1) -> None:
        self.title = title
        self.count = count
        self.index = 0
        self._last_text = ""
        self.summary = []  # the filter's summary lines of this call (shown when it ends)

    @staticmethod
    def pixel_format(drawable) -> tuple:
        """``(babl format, channels, wire dtype, babl suffix)`` to read ``drawable`` without loss."""
        precision = drawable.get_image().get_precision()
        eight_bit = precision in (gi.Gimp.Precision.U8_NON_LINEAR, gi.Gimp.Precision.U8_PERCEPTUAL)
        suffix = " u8" if eight_bit else " float"
        gray = drawable.is_gray()
        alpha = drawable.has_alpha()
        channels = (1 if gray else 3) + (1 if alpha else 0)
        return ("Y'" if gray else "R'G'B'") + ("A" if alpha else "") + suffix, channels, "u8" if eight_bit else "f32", suffix

    @staticmethod
    def selection(drawable):
        """``(x, y, width, height)`` of the selection within ``drawable`` (all of it without one), or ``None``."""
        intersects, x, y, width, height = drawable.mask_intersect()
        if not intersects or width <= 0 or height <= 0:
            return None
        return x, y, width, height

    @staticmethod
    def read(drawable, region: tuple, babl_format: str, scale: float = 1.0) -> bytes:
        """Pixels of ``region`` (drawable coordinates) as raw bytes, downscaled by ``scale`` (``<= 1``)."""
        x, y, width, height = region
        if scale != 1.0:
            x, y = int(x * scale), int(y * scale)
            width, height = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
        rect = gi.Gegl.Rectangle.new(x, y, width, height)
        return bytes(drawable.get_buffer().get(rect, scale, babl_format, gi.Gegl.AbyssPolicy.CLAMP))

    @staticmethod
    def write(drawable, region: tuple, babl_format: str, data) -> None:
        """Write pixels into ``region`` through the shadow buffer (the selection applies; one undo step)."""
        x, y, width, height = region
        shadow = drawable.get_shadow_buffer()
        shadow.set(gi.Gegl.Rectangle.new(x, y, width, height), babl_format, bytes(data))
        shadow.flush()
        drawable.merge_shadow(True)
        drawable.update(x, y, width, height)

    @staticmethod
    def add_layer(image, above, name: str, offsets: tuple, size: tuple, babl_format: str, data):
        """A new layer above the layer ``above`` (or at the top), filled with ``data`` and placed at ``offsets``."""
        width, height = size
        gray = image.get_base_type() == gi.Gimp.ImageBaseType.GRAY
        alpha = babl_format.split(" ")[0].endswith("A")
        kind = {
            (False, False): gi.Gimp.ImageType.RGB_IMAGE,
            (False, True): gi.Gimp.ImageType.RGBA_IMAGE,
            (True, False): gi.Gimp.ImageType.GRAY_IMAGE,
            (True, True): gi.Gimp.ImageType.GRAYA_IMAGE,
        }[(gray, alpha)]
        layer = gi.Gimp.Layer.new(image, name, width, height, kind, 100.0, gi.Gimp.LayerMode.NORMAL)
        is_layer = above is not None and above.is_layer()
        image.insert_layer(layer, above.get_parent() if is_layer else None, image.get_item_position(above) if is_layer else 0)
        layer.set_offsets(*offsets)
        buffer = layer.get_buffer()
        buffer.set(gi.Gegl.Rectangle.new(0, 0, width, height), babl_format, bytes(data))  # babl converts grey to RGB
        buffer.flush()
        layer.update(0, 0, width, height)
        return layer

    def progress(self, fraction: float, message: str) -> None:
        """Progress of the current drawable (of ``count``) in GIMP's progress bar, with the worker's message."""
        gi.Gimp.progress_update((self.index + min(max(fraction, 0.0), 1.0)) / self.count)
        if message and message != self._last_text:
            self._last_text = message
            gi.Gimp.progress_set_text(f"{self.title}: {message}")

    @staticmethod
    def error(procedure, message: str):
        """The procedure's return values for a failed call, with ``message`` shown to the user."""
        return procedure.new_return_values(
            gi.Gimp.PDBStatusType.EXECUTION_ERROR, gi.GLib.Error.new_literal(gi.Gimp.PlugIn.error_quark(), message, 0)
        )


def image_parameter_pixels(host: GimpHost, drawables: dict, scale: float = 1.0) -> list:
    """``(image header, pixels)`` for each drawable chosen for an image parameter (whole, downscaled by ``scale``)."""
    images = []
    for name, drawable in drawables.items():
        if drawable.is_group():
            raise WorkerError(f"{drawable.get_name()!r}, chosen for {name!r}, is a layer group; choose a pixel layer.")
        babl_format, channels, dtype, _ = host.pixel_format(drawable)
        width, height = drawable.get_width(), drawable.get_height()
        pixels = host.read(drawable, (0, 0, width, height), babl_format, scale)
        if scale != 1.0:
            width, height = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
        images.append((wire.image_header(width, height, channels, dtype, name=name), pixels))
    return images


def filter_drawable(host: GimpHost, request: dict, image, drawable, new_layer: bool) -> None:
    """Filter one drawable: read its selected pixels, run the worker, write the result and the extra outputs.

    Args:
        host: The GIMP host functions.
        request: ``info``, ``values``, ``seed``, ``given``, ``images`` and the ``client``.
        image: The image.
        drawable: The drawable to filter.
        new_layer: Put the result on a new layer above instead of replacing the pixels.
    """
    info = request["info"]
    if drawable.is_group():
        raise WorkerError(f"{drawable.get_name()!r} is a layer group; select a pixel layer (or merge the group) and try again.")
    region = host.selection(drawable)
    if region is None:
        return  # the selection does not touch this drawable: nothing to change
    x, y, width, height = region
    in_format, channels, dtype, suffix = host.pixel_format(drawable)
    pixels = host.read(drawable, region, in_format)
    client = request["client"]
    _log_call(
        {
            "filter": info["name"],
            "values": request["values"],
            "seed": request["seed"],
            "given": request["given"],
            "images": sorted(header["name"] for header, _ in request["images"]),
            "region": [x, y, width, height],
            "format": in_format,
            "drawable": drawable.get_name(),
            "socket": client.socket_path,
        }
    )
    reply, data = client.run(
        info["name"], request["values"], request["seed"], width, height, channels, dtype, pixels,
        host.progress, images=request["images"], given=request["given"],
    )
    out_format = ("R'G'B'A" if reply["channels"] == 4 else "R'G'B'") + suffix
    name = f"{drawable.get_name()} ({info['title']})"
    offset_x, offset_y = drawable.get_offsets()[1:] if drawable.is_layer() else (0, 0)
    top = drawable
    if (reply["width"], reply["height"]) == (width, height):
        if new_layer:
            if not drawable.is_layer():
                raise WorkerError("'As a new layer' needs a layer; a channel or mask is selected. Choose 'Replace'.")
            top = drawable.copy()
            top.set_name(name)
            image.insert_layer(top, drawable.get_parent(), image.get_item_position(drawable))
        host.write(top, region, out_format, data)
    else:  # a different-sized analysis (e.g. a table of activations): always a new layer
        top = host.add_layer(image, drawable, name, (offset_x + x, offset_y + y), (reply["width"], reply["height"]), out_format, data)
    host.summary.extend(line for line in reply.get("summary") or () if line not in host.summary)
    for output in reply["outputs"]:  # extra outputs (frames, maps): new layers above, in emission order
        output_format = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}[output["channels"]] + suffix
        top = host.add_layer(
            image, top, f"{drawable.get_name()} ({info['title']}: {output['name']})", (offset_x + x, offset_y + y),
            (output["width"], output["height"]), output_format, output["pixels"],
        )


def read_seed_and_mode(config) -> tuple:
    """The seed and whether the result goes on a new layer."""
    return int(config.get_property(SEED_ARGUMENT)), config.get_property(OUTPUT_ARGUMENT) == "new-layer"


# -- GIMP: the dialog -------------------------------------------------------------------------
class FilterDialog:
    """The filter's dialog: essential controls first, groups in frames, technical knobs folded away, a preview.

    Widgets are GIMP's property widgets bound to the procedure's config, laid
    out from :func:`dialog_sections`; labels get unique mnemonics
    (:func:`mnemonic_labels`). The preview runs the filter on a downscaled copy
    of the selection in the warm worker, in a thread of its own, so the dialog
    stays responsive; a newer request or closing the dialog cancels the old one.
    """

    def __init__(self, procedure, config, info: dict, manifest: dict, drawable) -> None:
        gi.require_version("GimpUi", "3.0")
        gi.require_version("Gtk", "3.0")
        from gi.repository import GimpUi, Gtk

        self.GimpUi, self.Gtk = GimpUi, Gtk
        GimpUi.init(PLUG_IN_NAME)
        self.procedure, self.config, self.info, self.manifest, self.drawable = procedure, config, info, manifest, drawable
        self.touched = set()
        self._by_argument = {argument_name(param["name"]): param["name"] for param in info["params"]}
        self.dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
        self._preview_client = None
        self._preview_generation = 0
        self._layer_combos = []
        self._layers_generation = 0
        self._closed = False
        self._filling = False
        self._restore_colour_defaults()
        self._build()
        config.connect("notify", self._on_notify)
        self._check_required()
        self.load_layers()  # also warms the worker (model loaded) for the preview and the run

    def _restore_colour_defaults(self) -> None:
        """Show declared colours, not black: GIMP 3.0.4 hands a caller's unset colour over as transparent black."""
        for param in self.info["params"]:
            if param["kind"] == "colour":
                name = argument_name(param["name"])
                colour = self.config.get_property(name)
                if colour is None or read_colour(colour, [-1.0]) == [-1.0]:
                    self.config.set_property(name, make_colour(param["default"]))

    # layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        Gtk = self.Gtk
        sections = dialog_sections(self.info)
        # Mnemonics in the order a user meets the controls: the essential ones get the free letters first.
        seed_and_output = [{"name": SEED_ARGUMENT, "label": "Seed"}, {"name": OUTPUT_ARGUMENT, "label": "Output"}]
        grouped = [p for _, params in sections["groups"] for p in params]
        advanced = [p for _, params in sections["advanced"] for p in params]
        ordered = sections["essential"] + seed_and_output + grouped + [{"name": ADVANCED_TITLE, "label": ADVANCED_TITLE}] + advanced
        labels = mnemonic_labels([param.get("label") or param["name"] for param in ordered])
        self._labels = dict(zip([param["name"] for param in ordered], labels))

        left = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
        left.pack_start(self._grid(sections["essential"], extra=True), False, False, 0)
        left.pack_start(self._preview_frame(), False, False, 0)
        right = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
        for title, params in sections["groups"]:
            right.pack_start(self._frame(title, self._grid(params)), False, False, 0)
        if sections["advanced"]:
            expander = Gtk.Expander.new_with_mnemonic(self._labels[ADVANCED_TITLE])
            box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
            box.set_margin_top(6)
            for title, params in sections["advanced"]:
                box.pack_start(self._frame(title, self._grid(params)), False, False, 0)
            expander.add(box)
            right.pack_start(expander, False, False, 0)
        columns = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=18)
        columns.pack_start(left, False, False, 0)
        if right.get_children():
            columns.pack_start(right, True, True, 0)
        self.dialog.get_content_area().pack_start(columns, True, True, 0)
        columns.show_all()

    def _frame(self, title: str, child):
        frame = self.GimpUi.Frame.new(title)
        frame.add(child)
        return frame

    def _grid(self, params: list, extra: bool = False):
        Gtk = self.Gtk
        grid = Gtk.Grid(row_spacing=4, column_spacing=8)
        rows = [(argument_name(param["name"]), param) for param in params]
        if extra:
            rows += [(SEED_ARGUMENT, {"name": SEED_ARGUMENT, "kind": "int", "minimum": 0, "maximum": None, "default": 0}),
                     (OUTPUT_ARGUMENT, {"name": OUTPUT_ARGUMENT, "kind": "output"})]
        for row, (name, param) in enumerate(rows):
            label_text = self._labels.get(param["name"], param["name"])
            widget, labelled = self._widget(name, param, label_text)
            widget.set_hexpand(True)
            if labelled:
                grid.attach(widget, 0, row, 2, 1)
                continue
            label = Gtk.Label.new_with_mnemonic(label_text)
            label.set_xalign(0.0)
            label.set_mnemonic_widget(widget)
            grid.attach(label, 0, row, 1, 1)
            widget.set_hexpand(True)
            grid.attach(widget, 1, row, 1, 1)
            help_text = param.get("help")
            if help_text:
                label.set_tooltip_text(help_text)
                widget.set_tooltip_text(help_text)
        return grid

    def _widget(self, name: str, param: dict, label: str) -> tuple:
        """The widget of one argument and whether it carries its own label."""
        GimpUi, Gtk = self.GimpUi, self.Gtk
        if param["kind"] == "output":
            return GimpUi.prop_choice_combo_box_new(self.config, name), False
        kind = widget_kind(param)
        if kind in ("slider", "spin"):
            step, page, digits = increments(param)
            if kind == "slider":
                widget = GimpUi.prop_spin_scale_new(self.config, name, step, page, digits)
                widget.set_label(label)  # the slider shows its label inside, mnemonic included
                widget.set_tooltip_text(param.get("help") or "")
                return widget, True
            return GimpUi.prop_spin_button_new(self.config, name, step, page, digits), False
        if kind == "check":
            widget = GimpUi.prop_check_button_new(self.config, name, label)
            widget.set_tooltip_text(param.get("help") or "")
            return widget, True
        if kind == "combo":
            return GimpUi.prop_choice_combo_box_new(self.config, name), False
        if kind == "drawable":  # GIMP's chooser shows the argument's label itself
            return GimpUi.prop_drawable_chooser_new(self.config, name, param.get("label") or param["name"]), True
        if kind == "file":
            return GimpUi.prop_file_chooser_button_new(self.config, name, param.get("label") or param["name"], Gtk.FileChooserAction.OPEN), False
        if kind == "colour":
            return GimpUi.prop_color_select_new(self.config, name, 64, 20, GimpUi.ColorAreaType.FLAT), False
        if kind == "layers":
            return self._layer_combo(name, param), False
        return GimpUi.prop_entry_new(self.config, name, -1), False

    # the model's layers ---------------------------------------------------------------------
    def _layer_combo(self, name: str, param: dict):
        """A text field bound to the argument, with a list of the chosen model's good layers (filled from the worker)."""
        Gtk, GObject = self.Gtk, gi.GObject
        combo = Gtk.ComboBoxText.new_with_entry()
        if param["kind"] == "layers" and param.get("default_text"):
            combo.append_text(str(param["default_text"]))
        flags = GObject.BindingFlags.BIDIRECTIONAL | GObject.BindingFlags.SYNC_CREATE
        self.config.bind_property(
            name, combo.get_child(), "text", flags, lambda _binding, value: value or "", lambda _binding, value: value or ""
        )
        self._layer_combos.append((combo, param))
        return combo

    def _model_argument(self):
        """The argument of the filter's first ``model`` parameter, or ``None``."""
        return next((argument_name(param["name"]) for param in self.info["params"] if param["kind"] == "model"), None)

    def load_layers(self) -> None:
        """Ask the worker (in a thread) for the chosen model's good layers and offer them in the layer fields."""
        argument = self._model_argument()
        if not self._layer_combos or argument is None:
            return
        values, _ = read_values(self.config, self.info, self.manifest)
        model = next(values[param["name"]] for param in self.info["params"] if argument_name(param["name"]) == argument)
        self._layers_generation += 1
        generation = self._layers_generation
        manifest = self.manifest

        def work():
            try:
                reply, _ = WorkerClient(manifest).request({"op": "layers", "model": model})
                layers = list(reply.get("layers") or [])
            except Exception:  # noqa: BLE001 - without a list the field stays a plain text field
                layers = []
            self._idle(lambda: generation == self._layers_generation and not self._closed and self._fill_layers(model, layers))

        threading.Thread(target=work, name="neurofilters-layers", daemon=True).start()

    def _fill_layers(self, model: str, layers: list) -> None:
        _log_call({"layers": model, "offered": layers})
        self._filling = True
        try:
            self._refill(model, layers)
        finally:
            self._filling = False

    def _refill(self, model: str, layers: list) -> None:
        for combo, param in self._layer_combos:
            entry = combo.get_child()
            text = entry.get_text()
            combo.remove_all()
            if param["kind"] == "layers" and param.get("default_text"):
                combo.append_text(str(param["default_text"]))
            for layer in layers:
                combo.append_text(layer)
            entry.set_text(text)
            combo.set_tooltip_text(
                f"{param.get('help', '')} The list holds {model}'s recommended layers; "
                + ("type several with weights, e.g. 'a:1,b:0.5'." if param["kind"] == "layers" else "or type any layer name.")
            )

    # preview -------------------------------------------------------------------------------
    def _preview_frame(self):
        Gtk = self.Gtk
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.preview_image = Gtk.Image()
        self.preview_image.set_size_request(PREVIEW_SIZE, PREVIEW_SIZE)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.preview_button = Gtk.Button.new_with_mnemonic("_Preview")
        self.preview_button.set_tooltip_text("Run the filter with these settings on a downscaled copy of the selection (the dialog stays usable).")
        self.preview_button.connect("clicked", lambda _button: self.start_preview())
        self.preview_status = Gtk.ProgressBar()
        self.preview_status.set_show_text(True)
        self.preview_status.set_text("Not computed yet")
        row.pack_start(self.preview_button, False, False, 0)
        row.pack_start(self.preview_status, True, True, 0)
        box.pack_start(self.preview_image, False, False, 0)
        box.pack_start(row, False, False, 0)
        return self._frame("Preview", box)

    def start_preview(self) -> None:
        """Compute a preview of the current settings in a thread (cancelling an older one)."""
        self.cancel_preview()
        self._preview_generation += 1
        generation = self._preview_generation
        host = GimpHost(self.info["title"])
        try:
            region = host.selection(self.drawable)
            if region is None:
                raise WorkerError("The selection does not touch this layer.")
            scale = min(1.0, PREVIEW_SIZE / float(max(region[2], region[3])))
            width, height = max(1, int(round(region[2] * scale))), max(1, int(round(region[3] * scale)))
            pixels = host.read(self.drawable, region, "R'G'B' u8", scale)
            values, drawables = read_values(self.config, self.info, self.manifest)
            images = image_parameter_pixels(host, drawables, scale)
            seed, _ = read_seed_and_mode(self.config)
            given = given_names(self.info, values, self._touched_params() | set(drawables))
            client = WorkerClient(self.manifest)
        except WorkerError as error:
            self._show_status(str(error), 0.0)
            return
        self._preview_client = client
        self._show_status("Starting…", 0.0)
        _log_call({"preview": self.info["name"], "status": "started", "size": [width, height], "values": values, "given": given})

        def progress(fraction, message):
            self._idle(lambda: generation == self._preview_generation and not self._closed and self._show_status(message or "Working…", fraction))

        def work():
            try:
                reply, data = client.run(self.info["name"], values, seed, width, height, 3, "u8", pixels, progress, images=images, given=given)
                outcome = (reply, bytes(data), None)
            except Exception as error:  # noqa: BLE001 - shown in the dialog, never raised in a thread
                outcome = (None, None, str(error))
            self._idle(lambda: generation == self._preview_generation and not self._closed and self._show_preview(*outcome))

        threading.Thread(target=work, name="neurofilters-preview", daemon=True).start()

    @staticmethod
    def _idle(callback) -> None:
        """Run ``callback`` once in GTK's main loop (the only thread that may touch widgets)."""

        def once():
            callback()
            return False

        gi.GLib.idle_add(once)

    def _show_status(self, text: str, fraction: float) -> None:
        self.preview_status.set_fraction(min(max(fraction, 0.0), 1.0))
        self.preview_status.set_text(text[:120])
        self.preview_status.set_tooltip_text(text)

    def _show_preview(self, reply, data, error) -> None:
        self._preview_client = None
        _log_call(
            {"preview": self.info["name"], "status": "failed" if error else "done", "error": error,
             "size": [reply["width"], reply["height"]] if reply else None}
        )
        if error is not None:
            self._show_status(error.splitlines()[0], 0.0)
            return
        from gi.repository import GdkPixbuf

        channels = reply["channels"]
        if channels not in (3, 4):
            self._show_status(f"The preview has {channels} channel(s); only colour results are shown.", 1.0)
            return
        pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
            gi.GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, channels == 4, 8, reply["width"], reply["height"], reply["width"] * channels
        )
        self.preview_image.set_from_pixbuf(pixbuf)
        self._show_status(preview_status(reply), 1.0)

    def cancel_preview(self) -> None:
        """Stop a running preview (the worker stops it at its next progress report)."""
        client, self._preview_client = self._preview_client, None
        if client is not None:
            client.cancel()

    # running -------------------------------------------------------------------------------
    def _on_notify(self, _config, pspec) -> None:
        if self._filling:
            return  # our own refill of a layer list, not the user
        self.touched.add(pspec.get_name())
        self._check_required()
        if pspec.get_name() == self._model_argument():
            self.load_layers()

    def _check_required(self) -> None:
        """OK only once every required image has a layer; the status line says what is missing."""
        hint = missing_required(self.info, read_values(self.config, self.info, self.manifest)[1])
        self.dialog.set_response_sensitive(self.Gtk.ResponseType.OK, not hint)
        if hint:
            self._show_status(hint, 0.0)

    def _touched_params(self) -> set:
        return {self._by_argument[name] for name in self.touched if name in self._by_argument}

    def run(self) -> tuple:
        """Show the dialog until OK or Cancel.

        Returns:
            ``(accepted, touched)``: whether the user pressed OK, and the names
            of the parameters whose controls the user changed.
        """
        try:
            accepted = self.dialog.run()
        finally:
            self._closed = True
            self.cancel_preview()
            self._preview_generation += 1
            self.dialog.destroy()
        return accepted, self._touched_params()


# -- GIMP: the plug-in ------------------------------------------------------------------------
def create_filter_procedure(plug_in, name: str, info: dict, manifest: dict, run_func):
    """The PDB procedure of one filter: its arguments from the manifest, then the seed and the output mode."""
    procedure = gi.Gimp.ImageProcedure.new(plug_in, name, gi.Gimp.PDBProcType.PLUGIN, run_func, info)
    procedure.set_image_types("RGB*, GRAY*")
    procedure.set_sensitivity_mask(gi.Gimp.ProcedureSensitivityMask.DRAWABLE | gi.Gimp.ProcedureSensitivityMask.DRAWABLES)
    procedure.set_menu_label(info["title"] + "...")
    procedure.add_menu_path(f"{MENU_ROOT}/{info['category']}")
    procedure.set_documentation(info["summary"], info.get("description") or info["summary"], name)
    procedure.set_attribution("neurofilters", "neurofilters", "2025")
    for param in info["params"]:
        add_argument(procedure, param, manifest)
    rw = gi.GObject.ParamFlags.READWRITE
    procedure.add_int_argument(SEED_ARGUMENT, "Seed", "Seed of the filter's randomness: same seed, same result.", 0, _INT_LIMIT, 0, rw)
    modes = gi.Gimp.Choice.new()
    for index, (nick, label, help_text) in enumerate(OUTPUT_MODES):
        modes.add(nick, index, label, help_text)
    procedure.add_choice_argument(
        OUTPUT_ARGUMENT, "Output", "Replace the layer, or add the result as a new layer.", modes, default_output_mode(info), rw
    )
    return procedure


def run_filter(procedure, run_mode, image, drawables, config, info: dict, manifest: dict):
    """Run a filter procedure: the dialog when interactive, then every selected drawable in one undo group."""
    Gimp = gi.Gimp
    touched = set()
    if run_mode == Gimp.RunMode.INTERACTIVE:
        try:
            accepted, touched = FilterDialog(procedure, config, info, manifest, drawables[0] if drawables else None).run()
        except Exception as error:  # a bug in the dialog must still end as a GIMP error, not a crash
            return GimpHost.error(
                procedure, f"{info['title']}: the neurofilters dialog failed: {type(error).__name__}: {error}. Please report it."
            )
        if not accepted:
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, gi.GLib.Error())
    host = GimpHost(info["title"], max(1, len(drawables or [])))
    try:
        if not drawables:
            raise WorkerError("No layer is selected. Select the layer to filter and try again.")
        values, chosen = read_values(config, info, manifest)
        if missing_required(info, chosen):
            raise WorkerError(missing_required(info, chosen))
        seed, new_layer = read_seed_and_mode(config)
        request = {
            "info": info,
            "values": values,
            "seed": seed,
            "given": given_names(info, values, touched | set(chosen)),
            "images": image_parameter_pixels(host, chosen),
            "client": WorkerClient(manifest),
        }
    except WorkerError as error:
        return host.error(procedure, str(error))
    Gimp.progress_init(info["title"])
    image.undo_group_start()
    try:
        for index, drawable in enumerate(drawables):
            host.index = index
            filter_drawable(host, request, image, drawable, new_layer)
    except WorkerError as error:
        return host.error(procedure, f"{info['title']}: {error}")
    except Exception as error:  # a bug here must still end as a GIMP error, not a crash
        return host.error(
            procedure,
            f"{info['title']}: internal error of the neurofilters plug-in: {type(error).__name__}: {error}. "
            "Please report it with the text of this message.",
        )
    finally:
        image.undo_group_end()
        Gimp.progress_end()
    Gimp.displays_flush()
    if host.summary and run_mode == Gimp.RunMode.INTERACTIVE:  # what the filter found, where the user looks
        Gimp.message(f"{info['title']}: " + "\n".join(host.summary))
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, gi.GLib.Error())


def main() -> None:
    """Run as GIMP's plug-in (GIMP starts this file with its own arguments)."""
    global gi
    gi = _import_gi()
    _timing("imports")
    Gimp = gi.Gimp

    class NeurofiltersPlugIn(Gimp.PlugIn):
        """One GIMP procedure per filter of the manifest."""

        manifest = None
        manifest_error = None

        def _manifest(self):
            if self.manifest is None and self.manifest_error is None:
                try:
                    type(self).manifest = load_manifest()
                except WorkerError as error:
                    type(self).manifest_error = str(error)
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
            procedure = create_filter_procedure(self, name, info, manifest, self.run_filter)
            _timing("create " + name)
            return procedure

        def run_setup_problem(self, procedure, run_mode, image, drawables, config, data):
            return GimpHost.error(procedure, self.manifest_error or "neurofilters is not set up.")

        def run_filter(self, procedure, run_mode, image, drawables, config, info):
            return run_filter(procedure, run_mode, image, drawables, config, info, self._manifest())

    Gimp.main(NeurofiltersPlugIn.__gtype__, sys.argv)


if __name__ == "__main__":
    main()
