"""The GIMP worker: runs filters for the GIMP plug-in, in the project's own environment.

GIMP's Python has neither NumPy nor Keras, so the plug-in (``gimp_plugin/``)
only moves pixels: it starts this module with the interpreter recorded at
install time::

    python -m neurofilters.plugin_host.gimp.worker --socket /run/user/1000/neurofilters/w-<key>.sock

and talks to it over a Unix socket in a directory only the user can open
(mode 0700, socket 0600, peer uid checked). The worker stays alive between
calls with its :class:`~neurofilters.plugin_host.ModelCache` warm and exits after
``--idle-timeout`` seconds without a connection. Every connection has its own
thread, so a client always gets its hello at once; filters run one at a time
(a second call waits for the first, with heartbeats).

Also::

    python -m neurofilters.plugin_host.gimp.worker --describe    # the filters as JSON (the GIMP manifest)

Protocol (version :data:`PROTOCOL_VERSION`; framing and pixel layout in
:mod:`.wire`, the module the plug-in shares): on accepting a connection the
worker first sends ``{"type": "hello", "pid", "protocol"}`` at once, even while
it runs another call (a client that gets no hello reached a dying or stuck
worker). Requests have an ``"op"`` and may ask for ``"heartbeat": SECONDS``;
while a request is being handled the worker sends ``{"type": "heartbeat"}``
whenever it sent nothing for that long (default :data:`DEFAULT_HEARTBEAT`),
from a thread of its own, so a slow filter that reports no progress still shows
the client that the worker is alive, and a frozen worker shows that it is not:

- ``ping``: answered by ``{"type": "pong", "pid", "calls", "models", ...}``.
- ``run``: ``{"filter", "values", "seed", "width", "height", "channels", "dtype",
  "images", "given"}`` plus pixels: the image, then one image per entry of
  ``images`` (named image headers of image parameters, e.g. a GIMP layer
  chosen as deepdream's guide); ``given`` (optional) lists the parameters the
  user set explicitly. Answered by any number of ``{"type": "progress",
  "fraction", "message"}`` and ``{"type": "heartbeat"}`` and then ``{"type":
  "result", "width", "height", "channels", "dtype", "outputs",
  "compute_seconds"}`` plus pixels: the result, then the filter's extra outputs
  (``context.emit``), one per named image header of ``outputs``; or ``{"type":
  "error", "kind", "message"}``.
- ``layers``: ``{"model"}``; loads the model (warming the worker for the run
  that follows) and answers ``{"type": "layers", "model", "layers"}``: the
  names (aliases where the zoo has them) of the layers its layer table marks
  as good dream targets, for the dialog's layer list (empty, with a
  ``reason``, where the model has no table or cannot load).
- ``shutdown``: waits for a running filter, then answers ``{"type": "bye"}``;
  the worker exits.

If the client of a running filter goes away (the user cancelled, GIMP killed
the plug-in), the filter is stopped at its next progress report; a filter that
does not report within ``$NEUROFILTERS_WORKER_CANCEL_GRACE`` seconds (default
:data:`DEFAULT_CANCEL_GRACE`) after that makes the worker exit, so a stuck
filter never keeps later calls waiting.

Values arrive as GIMP hands them over (numbers, booleans, strings, colours as
three floats) and go through :func:`~neurofilters.plugin_host.validate_params`, the very
validation ``neurofilters run`` uses, so both give the same pixels and errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..core.context import ModelCache
from ..core.errors import FilterCancelled, NeurofiltersError, RegistryError
from ..core.params import Param, format_value
from . import wire
from .wire import MAGIC, PROTOCOL_VERSION, recv_message, send_message

__all__ = [
    "CANCEL_GRACE_ENV",
    "DEFAULT_CANCEL_GRACE",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_IDLE_TIMEOUT",
    "IDLE_TIMEOUT_ENV",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Worker",
    "check_frame",
    "decode_pixels",
    "describe_filters",
    "encode_pixels",
    "main",
    "payload_budget",
    "peer_allowed",
    "peer_uid",
    "recv_message",
    "send_message",
]

_FRAME = wire.FRAME
IDLE_TIMEOUT_ENV = "NEUROFILTERS_WORKER_IDLE_TIMEOUT"
DEFAULT_IDLE_TIMEOUT = 600.0
#: Seconds of silence after which the worker sends a heartbeat while it handles a request.
DEFAULT_HEARTBEAT = 2.0
_HEARTBEAT_RANGE = (0.05, 30.0)
CANCEL_GRACE_ENV = "NEUROFILTERS_WORKER_CANCEL_GRACE"
#: Seconds a filter whose client went away may run on before the worker exits.
DEFAULT_CANCEL_GRACE = 30.0
#: How often the accept loop wakes up to check the idle timeout and shutdown.
_ACCEPT_POLL = 0.25
#: Seconds between two progress messages (the last one always goes out).
_PROGRESS_INTERVAL = 0.1
_NUMPY_TYPES = {"u8": "uint8", "f32": "<f4"}


class ProtocolError(NeurofiltersError, wire.ProtocolError):
    """A peer sent something that is not a well-formed protocol message."""


# -- pixels -------------------------------------------------------------------------------
def decode_pixels(payload: bytes | bytearray | memoryview, width: int, height: int, channels: int, dtype: str) -> Any:
    """Turn raw ``H x W x C`` pixels into the float32 image in [0, 1] filters take.

    Raises:
        ProtocolError: Unknown ``dtype`` or a payload of the wrong size.
    """
    import numpy as np

    header = wire.image_header(width, height, channels, dtype)
    try:
        expected = wire.image_nbytes(header)
    except wire.ProtocolError as error:
        raise ProtocolError(str(error)) from None
    if memoryview(payload).nbytes != expected:
        raise ProtocolError(wire.size_error(header, memoryview(payload).nbytes))
    array = np.frombuffer(payload, dtype=_NUMPY_TYPES[dtype]).reshape(height, width, channels)
    if dtype == "u8":
        return array.astype(np.float32) / np.float32(255.0)
    return array.astype(np.float32)


def encode_pixels(image: Any, dtype: str) -> bytes:
    """Turn a float image in [0, 1] into raw ``u8`` (rounded) or little-endian ``f32`` bytes."""
    import numpy as np

    array = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if dtype == "u8":
        return np.ascontiguousarray(np.round(array * 255.0).astype(np.uint8)).tobytes()
    if dtype == "f32":
        return np.ascontiguousarray(array.astype("<f4")).tobytes()
    raise ProtocolError(f"Pixel type must be one of {', '.join(wire.DTYPES)}. Received: dtype={dtype!r}")


# -- the manifest -------------------------------------------------------------------------
def _json_value(param: Param, value: Any) -> Any:
    """A default as JSON: colours as three floats, layer lists as the text a user types."""
    if param.kind == "colour":
        return [float(component) for component in value]
    if param.kind == "layers":
        return format_value(param, value)
    return value


def describe_filters(registry: Any = None) -> dict[str, Any]:
    """Every registered filter and model, as the JSON the GIMP plug-in registers from.

    Importing filter declarations is cheap (no Keras), so this is what
    ``neurofilters gimp install`` runs; GIMP itself only reads the JSON.

    Args:
        registry: A :class:`~neurofilters.plugin_host.Registry`; defaults to the process registry.

    Returns:
        ``{"filters": [...], "models": [...], "failures": [...], "neurofilters_version": ...}``.
    """
    from ..core.registry import distribution_version, get_registry

    registry = registry if registry is not None else get_registry()
    filters = []
    for spec in registry.filters.values():
        filters.append(
            {
                "name": spec.name,
                "title": spec.title,
                "summary": spec.summary,
                "description": spec.description,
                "category": spec.category,
                "output": spec.output,
                "params": [
                    {
                        "name": param.name,
                        "kind": param.kind,
                        "group": param.group,
                        "advanced": param.advanced,
                        "required": param.required,
                        "default": _json_value(param, param.default),
                        "default_text": format_value(param, param.default),
                        "label": param.label,
                        "help": param.help,
                        "minimum": param.minimum,
                        "maximum": param.maximum,
                        "choices": list(param.choices),
                        "allowed": param.allowed(),
                    }
                    for param in spec.params
                ],
            }
        )
    return {
        "neurofilters_version": distribution_version("neurofilters"),
        "protocol": PROTOCOL_VERSION,
        "filters": filters,
        "models": [{"name": spec.name, "title": spec.title} for spec in registry.models.values()],
        "failures": [str(failure) for failure in registry.failures],
    }


# -- the server ---------------------------------------------------------------------------
def check_private_directory(path: Path) -> None:
    """Make sure ``path`` is a directory owned by this user that nobody else can enter.

    Raises:
        NeurofiltersError: It is not (the message says what to fix).
    """
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NeurofiltersError(f"The worker's socket directory {path} is not a directory. Remove it and retry.")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise NeurofiltersError(
            f"The worker's socket directory {path} must belong to uid {os.getuid()} with mode 0700. "
            f"Received: uid={info.st_uid}, mode={oct(info.st_mode & 0o777)}. Remove it and retry."
        )


def peer_uid(conn: socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (``SO_PEERCRED``).

    Returns:
        The uid, or ``None`` where the platform has no ``SO_PEERCRED``.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return uid


def peer_allowed(conn: socket.socket) -> bool:
    """Whether the peer runs as this process's user (where the platform can tell; else the 0700 directory guards)."""
    uid = peer_uid(conn)
    return uid is None or uid == os.getuid()


class _Channel:
    """One client connection: messages from several threads (filter, heartbeat) never interleave."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        self.last_sent = time.monotonic()

    def send(self, header: Mapping[str, Any], payload: bytes | bytearray | memoryview = b"") -> None:
        with self._lock:
            send_message(self.conn, header, payload)
            self.last_sent = time.monotonic()

    def client_gone(self) -> bool:
        """Whether the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.conn], [], [], 0)
            if not readable:
                return False
            return self.conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class _Heartbeat:
    """While a request is handled: a heartbeat after every ``interval`` s of silence.

    Once :meth:`filter_started` was called it also watches the client: if the
    client went away and the filter has not stopped ``grace`` seconds later (it
    reports no progress, so it cannot notice), the worker exits instead of
    keeping every later call waiting behind a filter that runs for nobody.
    """

    def __init__(self, channel: _Channel, interval: float, grace: float) -> None:
        self.channel = channel
        self.interval = interval
        self.grace = grace
        self._filter_started: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="neurofilters-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()

    def filter_started(self) -> None:
        """From now on a filter runs for this request: watch its client."""
        self._filter_started = time.monotonic()

    def _beat(self) -> None:
        gone_since: float | None = None
        tick = min(self.interval / 2, 0.5)
        while not self._done.wait(tick):
            now = time.monotonic()
            started = self._filter_started
            if gone_since is None and started is not None and self.channel.client_gone():
                gone_since = now
            if gone_since is not None:
                if started is not None and now - max(gone_since, started) >= self.grace and not self._done.is_set():
                    print(
                        f"The client of a running filter went away and the filter did not stop within {self.grace:g} s "
                        "(it reports no progress, so it cannot notice); exiting so that later calls do not wait for it.",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(3)
                continue
            if now - self.channel.last_sent >= self.interval:
                try:
                    self.channel.send({"type": "heartbeat"})
                except OSError:
                    gone_since = now


def _cancel_grace_default() -> float:
    text = os.environ.get(CANCEL_GRACE_ENV, "")
    try:
        value = float(text) if text else DEFAULT_CANCEL_GRACE
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SystemExit(f"{CANCEL_GRACE_ENV} must be a number of seconds > 0. Received: {CANCEL_GRACE_ENV}={text}")
    return value


class Worker:
    """A long-lived filter server on a user-only Unix socket.

    Attributes:
        socket_path: Where it listens.
        idle_timeout: Seconds without a connection after which it exits.
        models: The model cache every call shares.
        calls: Number of ``run`` requests served.
    """

    def __init__(
        self,
        socket_path: Path,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        registry: Any = None,
        cancel_grace: float = DEFAULT_CANCEL_GRACE,
    ) -> None:
        """Prepare (but do not yet open) a worker listening on ``socket_path``."""
        self.socket_path = Path(socket_path)
        self.idle_timeout = float(idle_timeout)
        self.cancel_grace = float(cancel_grace)
        self._registry = registry
        self.models = ModelCache(resolve=lambda name: self.registry.get_model(name))
        self.calls = 0
        self.started = time.time()
        self.last_compute_seconds: float | None = None
        self._stop = False
        self._busy = threading.Lock()  # one filter at a time (they share the model cache and the CPU)
        self._connections = 0
        self._connections_lock = threading.Lock()
        self._last_activity = time.monotonic()

    @property
    def registry(self) -> Any:
        """The filter registry (built on first use, honouring the environment's autoload settings)."""
        if self._registry is None:
            from ..core.registry import get_registry

            self._registry = get_registry()
        return self._registry

    def serve(self) -> int:
        """Listen until idle for ``idle_timeout`` seconds or told to shut down.

        Returns:
            The process exit status: 0, also when another worker already
            serves the same socket.
        """
        directory = self.socket_path.parent
        check_private_directory(directory)
        lock = open(os.fspath(self.socket_path) + ".lock", "a")  # noqa: SIM115 - held for the process's life
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            print(f"Another worker already serves {self.socket_path}; exiting.", file=sys.stderr)
            return 0
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")  # the client finds a stuck worker's pid here (it checks the lock is held)
        lock.flush()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # stale: its worker (which held the lock) is gone
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(os.fspath(self.socket_path))
        finally:
            os.umask(old_umask)
        os.chmod(self.socket_path, 0o600)
        identity = os.stat(self.socket_path).st_ino
        server.listen(16)
        server.settimeout(min(_ACCEPT_POLL, self.idle_timeout))
        print(f"neurofilters worker {os.getpid()} listening on {self.socket_path}", file=sys.stderr, flush=True)
        self._last_activity = time.monotonic()
        try:
            while not self._stop:
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    with self._connections_lock:
                        idle = self._connections == 0 and time.monotonic() - self._last_activity >= self.idle_timeout
                    if idle:
                        print(f"Idle for {self.idle_timeout:g} s; exiting.", file=sys.stderr)
                        break
                    continue
                with self._connections_lock:
                    self._connections += 1
                threading.Thread(target=self._connection_thread, args=(conn,), daemon=True).start()
        finally:
            server.close()
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == identity:
                    self.socket_path.unlink()
            lock.close()
        return 0

    def _connection_thread(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._serve_connection(conn)
        finally:
            with self._connections_lock:
                self._connections -= 1
                self._last_activity = time.monotonic()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        if not peer_allowed(conn):
            print(f"Refused a connection from uid {peer_uid(conn)} (this worker serves uid {os.getuid()} only).", file=sys.stderr, flush=True)
            return
        conn.settimeout(self.idle_timeout)
        channel = _Channel(conn)
        try:
            channel.send(wire.hello(os.getpid()))
        except OSError:
            return
        while not self._stop:
            try:
                header, payload = recv_message(conn, check_frame)  # the header is checked before the payload arrives
            except wire.ProtocolError as error:
                with contextlib.suppress(OSError):
                    channel.send({"type": "error", "kind": "ProtocolError", "message": str(error)})
                return
            except MemoryError:
                with contextlib.suppress(OSError):
                    channel.send({"type": "error", "kind": "MemoryError", "message": _OUT_OF_MEMORY})
                return
            except (ConnectionError, socket.timeout, OSError, struct.error):
                return
            try:
                self._handle(channel, header, payload)
            except (BrokenPipeError, ConnectionError):
                return

    def _heartbeat_interval(self, header: Mapping[str, Any]) -> float:
        asked = header.get("heartbeat", DEFAULT_HEARTBEAT)
        if isinstance(asked, bool) or not isinstance(asked, (int, float)):
            asked = DEFAULT_HEARTBEAT
        return min(max(float(asked), _HEARTBEAT_RANGE[0]), _HEARTBEAT_RANGE[1])

    def _handle(self, channel: _Channel, header: dict[str, Any], payload: bytearray) -> None:
        op = header.get("op")
        if op == "ping":
            channel.send(self._status())
        elif op == "layers":
            with _Heartbeat(channel, self._heartbeat_interval(header), self.cancel_grace), self._busy:
                reply = self._layers(header)
            channel.send(reply)
        elif op == "shutdown":
            with _Heartbeat(channel, self._heartbeat_interval(header), self.cancel_grace), self._busy:
                with contextlib.suppress(OSError):
                    channel.send({"type": "bye", "pid": os.getpid()})
                self._stop = True  # after the bye: the accept loop may end the process at once
        elif op == "run":
            with _Heartbeat(channel, self._heartbeat_interval(header), self.cancel_grace) as heartbeat:
                if not self._busy.acquire(blocking=False):
                    channel.send({"type": "progress", "fraction": 0.0, "message": "waiting for another call to finish"})
                    self._busy.acquire()
                try:
                    if self._stop:
                        reply, pixels = {"type": "error", "kind": "WorkerStopping", "message": "The neurofilters worker is shutting down; try again."}, b""
                    else:
                        heartbeat.filter_started()
                        reply, pixels = self._run(channel, header, payload)
                finally:
                    self._busy.release()
            channel.send(reply, pixels)
        else:
            channel.send(
                {"type": "error", "kind": "ProtocolError", "message": f"Unknown op. Received: op={op!r:.100}; expected ping, run, layers or shutdown."},
            )

    def _status(self) -> dict[str, Any]:
        loaded = [name for name in self.registry.models if name in self.models] if self._registry is not None else []
        return {
            "type": "pong",
            "pid": os.getpid(),
            "protocol": PROTOCOL_VERSION,
            "python": sys.executable,
            "calls": self.calls,
            "models": loaded,
            "started": self.started,
            "idle_timeout": self.idle_timeout,
            "last_compute_seconds": self.last_compute_seconds,
        }

    def _layers(self, header: Mapping[str, Any]) -> dict[str, Any]:
        """The layers of a model that are good dream targets (for the dialog's layer list); loads the model.

        A model handle without a ``layer_table()`` (or a model that cannot load)
        gives an empty list with the reason: the dialog then keeps a free text field.
        """
        name = header.get("model")
        if not isinstance(name, str) or not name:
            return {"type": "error", "kind": "ProtocolError", "message": f"Expected a model name. Received: model={name!r:.100}"}
        try:
            handle = self.models.get(name)
            table = getattr(handle, "layer_table", None)
            rows = table() if callable(table) else []
        except NeurofiltersError as error:
            return {"type": "layers", "model": name, "layers": [], "reason": str(error)}
        except Exception as error:  # a model plugin's bug: the dialog still works with a text field
            return {"type": "layers", "model": name, "layers": [], "reason": f"{type(error).__name__}: {error}"}
        good = [getattr(row, "alias", None) or row.name for row in rows if getattr(row, "dream_target", False)]
        return {"type": "layers", "model": name, "layers": good}

    def _run(self, channel: _Channel, header: dict[str, Any], payload: bytearray) -> tuple[dict[str, Any], bytes]:
        from ..core.params import parse_seed, validate_params
        from ..front import run

        self.calls += 1
        name = header.get("filter")
        try:
            try:
                spec = self.registry.get_filter(str(name))
            except RegistryError as error:
                raise RegistryError(
                    f"{error} The GIMP plug-in's filter list may be out of date: run "
                    "'neurofilters gimp install' and restart GIMP."
                ) from None
            values = header.get("values") or {}
            if not isinstance(values, dict):
                raise ProtocolError(f"Expected the parameter values as an object. Received: {values!r:.100}")
            seed = parse_seed(header.get("seed", 0))
            given = _given_names(header.get("given"), spec.params)
            dtype = header.get("dtype", "u8")
            main = wire.image_header(header.get("width"), header.get("height"), header.get("channels"), dtype)
            extra = header.get("images") or []
            if not isinstance(extra, list):
                raise ProtocolError(f"Expected the image parameters as a list. Received: {extra!r:.100}")
            parts = wire.split_images(payload, [main, *extra])
            image = decode_pixels(parts[0], main["width"], main["height"], main["channels"], dtype)
            values = {**values, **_image_values(spec.params, extra, parts[1:])}
            # GIMP sends every value, so "given" is the request's (None: the client did not say), not the keys.
            checked = validate_params(spec.params, values).with_given(given)
            outputs: dict[str, Any] = {}
            summary: list[str] = []
            started = time.perf_counter()
            result = run(spec, image, checked, seed=seed, models=self.models, progress=_ProgressSender(channel),
                         emit=outputs.__setitem__, report=summary.append)
            self.last_compute_seconds = time.perf_counter() - started
            height, width, channels = result.shape
            images = [(wire.image_header(width, height, channels, dtype), encode_pixels(result, dtype))]
            for output_name, pixels in outputs.items():
                out_height, out_width, out_channels = pixels.shape
                images.append(
                    (wire.image_header(out_width, out_height, out_channels, dtype, output_name), encode_pixels(pixels, dtype))
                )
            headers, data = wire.pack_images(images)
            return (
                {
                    "type": "result",
                    **headers[0],
                    "outputs": headers[1:],
                    "compute_seconds": self.last_compute_seconds,
                    "summary": summary,  # what the filter reported (the plug-in shows it)
                },
                data,
            )
        except wire.ProtocolError as error:
            return {"type": "error", "kind": "ProtocolError", "message": str(error)}, b""
        except (BrokenPipeError, ConnectionError):
            raise
        except FilterCancelled as error:
            return {"type": "error", "kind": "FilterCancelled", "message": str(error)}, b""
        except MemoryError:
            return {"type": "error", "kind": "MemoryError", "message": _OUT_OF_MEMORY}, b""
        except NeurofiltersError as error:
            return {"type": "error", "kind": type(error).__name__, "message": str(error)}, b""
        except Exception as error:  # a filter bug: report it, keep serving
            traceback.print_exc()
            return (
                {
                    "type": "error",
                    "kind": type(error).__name__,
                    "message": f"Filter {name!r} failed: {type(error).__name__}: {error}",
                },
                b"",
            )


def _given_names(given: Any, params: Any) -> frozenset[str] | None:
    """The parameter names the user set explicitly (``None``: the client did not say).

    Raises:
        ProtocolError: ``given`` is not a list of declared parameter names.
    """
    if given is None:
        return None
    declared = {param.name for param in params}
    if not isinstance(given, list) or not all(isinstance(name, str) and name in declared for name in given):
        raise ProtocolError(
            f"Expected 'given' as a list of the filter's parameter names. Received: given={given!r:.200}"
        )
    return frozenset(given)


def _image_values(params: Any, headers: list[Any], parts: list[memoryview]) -> dict[str, Any]:
    """Image parameters sent as pixels (a GIMP drawable), decoded to float32 arrays in [0, 1] by name.

    Raises:
        ProtocolError: An image names no image parameter of the filter.
    """
    import numpy as np

    kinds = {param.name: param.kind for param in params}
    arrays = {}
    for header, part in zip(headers, parts):
        name = header.get("name")
        if kinds.get(name) != "image":
            raise ProtocolError(f"Images may only be sent for image parameters. Received: an image named {name!r:.100}")
        array = decode_pixels(part, header["width"], header["height"], header["channels"], header["dtype"])
        arrays[name] = np.clip(array, 0.0, 1.0)  # GIMP's float layers may hold values outside [0, 1]
    return arrays


class _ProgressSender:
    """Progress callback that forwards progress to the client and notices when it hung up."""

    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self._channel.client_gone():
            raise FilterCancelled("The GIMP plug-in went away (cancelled or closed); stopping.")
        now = time.monotonic()
        if now - self._last < _PROGRESS_INTERVAL and fraction < 1.0:
            return
        self._last = now
        try:
            self._channel.send({"type": "progress", "fraction": fraction, "message": message})
        except OSError:
            raise FilterCancelled("The GIMP plug-in went away (cancelled or closed); stopping.") from None


BUDGET_ENV = "NEUROFILTERS_WORKER_MAX_BYTES"
_OUT_OF_MEMORY = "Out of memory: the image (or a setting that scales with it) is too large for this machine. Filter a smaller image or selection."


def payload_budget() -> int:
    """Largest request payload the worker receives: ``$NEUROFILTERS_WORKER_MAX_BYTES``, else half the machine's memory.

    Never more than :data:`wire.MAX_PAYLOAD`.
    """
    text = os.environ.get(BUDGET_ENV, "").strip()
    if text.isascii() and text.isdigit() and len(text) < 20:
        return min(int(text), wire.MAX_PAYLOAD)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        memory = 8 << 30
    return min(max(memory // 2, 64 << 20), wire.MAX_PAYLOAD)


def check_frame(header: Mapping[str, Any], payload_size: int, budget: int | None = None) -> None:
    """Check a request's payload against its header and the budget, before any of it is received.

    A ``run`` request's payload must be exactly its images (the main one and the
    image parameters) as the header describes them; other requests carry none.

    Raises:
        ProtocolError: The payload is over the budget or not what the header describes.
    """
    limit = payload_budget() if budget is None else budget
    if payload_size > limit:
        raise ProtocolError(
            f"The request carries {payload_size:,} bytes of pixels, more than this worker accepts ({limit:,} bytes: "
            f"half the memory, or ${BUDGET_ENV}). Filter a smaller image or selection."
        )
    if header.get("op") != "run":
        if payload_size:
            raise ProtocolError(f"Only 'run' requests carry pixels. Received: op={header.get('op')!r:.100} with {payload_size} bytes")
        return
    extra = header.get("images") or []
    if not isinstance(extra, list) or not all(isinstance(item, Mapping) for item in extra):
        raise ProtocolError(f"Expected the image parameters as a list of image headers. Received: {extra!r:.100}")
    main = wire.image_header(header.get("width"), header.get("height"), header.get("channels"), header.get("dtype", "u8"))
    expected = sum(wire.image_nbytes(item) for item in [main, *extra])
    if expected != payload_size:
        if not extra:
            raise ProtocolError(wire.size_error(main, payload_size))
        raise ProtocolError(f"Expected {expected} bytes of pixels for {1 + len(extra)} image(s). Received: {payload_size} bytes")


def _idle_timeout_default() -> float:
    text = os.environ.get(IDLE_TIMEOUT_ENV, "")
    try:
        return float(text) if text else DEFAULT_IDLE_TIMEOUT
    except ValueError:
        raise SystemExit(
            f"{IDLE_TIMEOUT_ENV} must be a number of seconds. Received: {IDLE_TIMEOUT_ENV}={text}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m neurofilters.plugin_host.gimp.worker``.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m neurofilters.plugin_host.gimp.worker", description="neurofilters' GIMP worker.")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--socket", type=Path, help="Unix socket to listen on (its directory must be mode 0700)")
    group.add_argument("--describe", action="store_true", help="print the registered filters as JSON and exit")
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        help=f"exit after this many seconds without a call (default ${IDLE_TIMEOUT_ENV} or {DEFAULT_IDLE_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    if args.describe:
        json.dump(describe_filters(), sys.stdout)
        sys.stdout.write("\n")
        return 0
    idle = args.idle_timeout if args.idle_timeout is not None else _idle_timeout_default()
    if not idle > 0:
        parser.error(f"--idle-timeout must be > 0. Received: {idle}")
    grace = _cancel_grace_default()
    from ..core.lifecycle import start_process

    start_process()  # library temporaries (TensorFlow's autograph) in a folder removed when the worker exits
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return Worker(args.socket, idle_timeout=idle, cancel_grace=grace).serve()
    except NeurofiltersError as error:
        print(f"neurofilters worker: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
