"""The GIMP worker: runs filters for the GIMP plug-in, in the project's own environment.

GIMP's Python has neither NumPy nor Keras, so the plug-in (``gimp_plugin/``)
only moves pixels: it starts this module with the interpreter recorded at
install time::

    python -m plugin_host._worker --socket /run/user/1000/neurofilters/w-<key>.sock

and talks to it over a Unix socket in a directory only the user can open
(mode 0700, socket 0600, peer uid checked). The worker stays alive between
calls with its :class:`~plugin_host.ModelCache` warm, serves one request at a
time and exits after ``--idle-timeout`` seconds without a connection.

Also::

    python -m plugin_host._worker --describe    # the filters as JSON (the GIMP manifest)

Protocol (version :data:`PROTOCOL_VERSION`): every message is a 16-byte
frame header ``!4sIQ`` (magic ``b"NFW1"``, JSON length, payload length), a
UTF-8 JSON object, then the raw payload (pixels, row-major ``H x W x C``,
``u8`` or little-endian ``f32``). On accepting a connection the worker first
sends ``{"type": "hello", "pid", "protocol"}`` (a client that gets no hello
reached a dying worker and starts a new one). Requests have an ``"op"``:

- ``ping``: answered by ``{"type": "pong", "pid", "calls", "models", ...}``.
- ``run``: ``{"filter", "values", "seed", "width", "height", "channels", "dtype"}``
  plus pixels; answered by any number of ``{"type": "progress", "fraction",
  "message"}`` and then ``{"type": "result", "width", "height", "channels",
  "dtype", "compute_seconds"}`` plus pixels, or ``{"type": "error", "kind",
  "message"}``.
- ``shutdown``: answered by ``{"type": "bye"}``; the worker exits.

Values arrive as GIMP hands them over (numbers, booleans, strings, colours as
three floats) and go through :func:`~plugin_host.validate_params`, the very
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
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._context import FilterContext, ModelCache
from ._errors import FilterCancelled, NeurofiltersError, ParameterError, RegistryError
from ._params import Param, format_value

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "IDLE_TIMEOUT_ENV",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "Worker",
    "decode_pixels",
    "describe_filters",
    "encode_pixels",
    "main",
    "recv_message",
    "send_message",
]

PROTOCOL_VERSION = 1
MAGIC = b"NFW1"
_FRAME = struct.Struct("!4sIQ")
_MAX_JSON = 16 * 1024 * 1024
_MAX_PAYLOAD = 8 * 1024 * 1024 * 1024
IDLE_TIMEOUT_ENV = "NEUROFILTERS_WORKER_IDLE_TIMEOUT"
DEFAULT_IDLE_TIMEOUT = 600.0
#: Seconds between two progress messages (the last one always goes out).
_PROGRESS_INTERVAL = 0.1
_DTYPES = {"u8": ("uint8", 1), "f32": ("<f4", 4)}


class ProtocolError(NeurofiltersError):
    """A peer sent something that is not a well-formed protocol message."""


# -- framing ------------------------------------------------------------------------------
def send_message(sock: socket.socket, header: Mapping[str, Any], payload: bytes | bytearray | memoryview = b"") -> None:
    """Send one framed message (JSON ``header`` and raw ``payload``)."""
    body = json.dumps(header, separators=(",", ":")).encode("utf-8")
    view = memoryview(payload).cast("B")
    sock.sendall(_FRAME.pack(MAGIC, len(body), view.nbytes) + body)
    if view.nbytes:
        sock.sendall(view)


def _recv_exact(sock: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], min(size - received, 1 << 22))
        if count == 0:
            raise ConnectionResetError(f"The peer closed the connection after {received} of {size} bytes.")
        received += count
    return buffer


def recv_message(sock: socket.socket) -> tuple[dict[str, Any], bytearray]:
    """Receive one framed message.

    Returns:
        The JSON header and the payload.

    Raises:
        ConnectionError: The peer closed the connection.
        ProtocolError: The bytes are not a protocol message.
    """
    magic, json_size, payload_size = _FRAME.unpack(_recv_exact(sock, _FRAME.size))
    if magic != MAGIC:
        raise ProtocolError(f"Expected a message starting with {MAGIC!r}. Received: {bytes(magic)!r}")
    if json_size > _MAX_JSON or payload_size > _MAX_PAYLOAD:
        raise ProtocolError(f"Message too large. Received: header={json_size} bytes, payload={payload_size} bytes")
    try:
        header = json.loads(_recv_exact(sock, json_size).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ProtocolError(f"The message header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"Expected a JSON object. Received: {type(header).__name__}")
    payload = _recv_exact(sock, payload_size) if payload_size else bytearray()
    return header, payload


# -- pixels -------------------------------------------------------------------------------
def decode_pixels(payload: bytes | bytearray, width: int, height: int, channels: int, dtype: str) -> Any:
    """Turn raw ``H x W x C`` pixels into the float32 image in [0, 1] filters take.

    Raises:
        ProtocolError: Unknown ``dtype`` or a payload of the wrong size.
    """
    import numpy as np

    if dtype not in _DTYPES:
        raise ProtocolError(f"Pixel type must be one of {', '.join(_DTYPES)}. Received: dtype={dtype!r}")
    if not all(isinstance(n, int) and n > 0 for n in (width, height)) or channels not in (1, 2, 3, 4):
        raise ProtocolError(f"Bad image size. Received: width={width}, height={height}, channels={channels}")
    numpy_type, size = _DTYPES[dtype]
    expected = width * height * channels * size
    if len(payload) != expected:
        raise ProtocolError(
            f"Expected {expected} bytes of {dtype} pixels for {width}x{height}x{channels}. Received: {len(payload)} bytes"
        )
    array = np.frombuffer(payload, dtype=numpy_type).reshape(height, width, channels)
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
    raise ProtocolError(f"Pixel type must be one of {', '.join(_DTYPES)}. Received: dtype={dtype!r}")


# -- the manifest -------------------------------------------------------------------------
def _json_value(param: Param, value: Any) -> Any:
    if param.kind == "colour":
        return [float(component) for component in value]
    if param.kind == "layers":
        return _default_text(param, value)
    return value


def _default_text(param: Param, value: Any) -> str:
    """The value as a user types it; layers of weight 1 without ``:1`` (``auto``, not ``auto:1``)."""
    if param.kind == "layers":
        return ",".join(name if weight == 1 else f"{name}:{format_value(Param('w', 'float', weight, 'w'), weight)}" for name, weight in value)
    return format_value(param, value)


def describe_filters(registry: Any = None) -> dict[str, Any]:
    """Every registered filter and model, as the JSON the GIMP plug-in registers from.

    Importing filter declarations is cheap (no Keras), so this is what
    ``neurofilters gimp install`` runs; GIMP itself only reads the JSON.

    Args:
        registry: A :class:`~plugin_host.Registry`; defaults to the process registry.

    Returns:
        ``{"filters": [...], "models": [...], "failures": [...], "neurofilters_version": ...}``.
    """
    from ._registry import _version, get_registry

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
                        "default": _json_value(param, param.default),
                        "default_text": _default_text(param, param.default),
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
        "neurofilters_version": _version("neurofilters"),
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


class Worker:
    """A long-lived filter server on a user-only Unix socket.

    Attributes:
        socket_path: Where it listens.
        idle_timeout: Seconds without a connection after which it exits.
        models: The model cache every call shares.
        calls: Number of ``run`` requests served.
    """

    def __init__(self, socket_path: Path, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT, registry: Any = None) -> None:
        """Prepare (but do not yet open) a worker listening on ``socket_path``."""
        self.socket_path = Path(socket_path)
        self.idle_timeout = float(idle_timeout)
        self._registry = registry
        self.models = ModelCache(resolve=lambda name: self.registry.get_model(name))
        self.calls = 0
        self.started = time.time()
        self.last_compute_seconds: float | None = None
        self._stop = False

    @property
    def registry(self) -> Any:
        """The filter registry (built on first use, honouring the environment's autoload settings)."""
        if self._registry is None:
            from ._registry import get_registry

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
        server.listen(8)
        server.settimeout(self.idle_timeout)
        print(f"neurofilters worker {os.getpid()} listening on {self.socket_path}", file=sys.stderr, flush=True)
        try:
            while not self._stop:
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    print(f"Idle for {self.idle_timeout:g} s; exiting.", file=sys.stderr)
                    break
                with conn:
                    self._serve_connection(conn)
        finally:
            server.close()
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == identity:
                    self.socket_path.unlink()
            lock.close()
        return 0

    def _peer_allowed(self, conn: socket.socket) -> bool:
        option = getattr(socket, "SO_PEERCRED", None)
        if option is None:
            return True  # the 0700 directory is the guard where peer credentials are unavailable
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
        return uid == os.getuid()

    def _serve_connection(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        if not self._peer_allowed(conn):
            return
        conn.settimeout(self.idle_timeout)
        try:
            send_message(conn, {"type": "hello", "pid": os.getpid(), "protocol": PROTOCOL_VERSION})
        except OSError:
            return
        while not self._stop:
            try:
                header, payload = recv_message(conn)
            except (ConnectionError, socket.timeout, OSError, struct.error):
                return
            except ProtocolError as error:
                with contextlib.suppress(OSError):
                    send_message(conn, {"type": "error", "kind": "ProtocolError", "message": str(error)})
                return
            try:
                self._handle(conn, header, payload)
            except (BrokenPipeError, ConnectionError):
                return

    def _handle(self, conn: socket.socket, header: dict[str, Any], payload: bytearray) -> None:
        op = header.get("op")
        if op == "ping":
            send_message(conn, self._status())
        elif op == "shutdown":
            self._stop = True
            send_message(conn, {"type": "bye", "pid": os.getpid()})
        elif op == "run":
            reply, pixels = self._run(conn, header, payload)
            send_message(conn, reply, pixels)
        else:
            send_message(
                conn,
                {"type": "error", "kind": "ProtocolError", "message": f"Unknown op. Received: op={op!r}; expected ping, run or shutdown."},
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

    def _run(self, conn: socket.socket, header: dict[str, Any], payload: bytearray) -> tuple[dict[str, Any], bytes]:
        from ._jobs import apply_filter
        from ._params import validate_params

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
            seed = header.get("seed", 0)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ParameterError(f'"seed" must be an integer. Received: seed={seed!r}', param="seed", value=seed)
            params = validate_params(spec.params, values)
            dtype = header.get("dtype", "u8")
            image = decode_pixels(payload, header.get("width"), header.get("height"), header.get("channels"), dtype)
            context = FilterContext(seed=seed, progress=_ProgressSender(conn), models=self.models)
            started = time.perf_counter()
            result = apply_filter(spec, image, params, context=context, validated=True)
            self.last_compute_seconds = time.perf_counter() - started
            height, width, channels = result.shape
            return (
                {
                    "type": "result",
                    "width": width,
                    "height": height,
                    "channels": channels,
                    "dtype": dtype,
                    "compute_seconds": self.last_compute_seconds,
                },
                encode_pixels(result, dtype),
            )
        except (BrokenPipeError, ConnectionError):
            raise
        except FilterCancelled as error:
            return {"type": "error", "kind": "FilterCancelled", "message": str(error)}, b""
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


class _ProgressSender:
    """Progress callback that forwards progress to the client and notices when it hung up."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._last = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if self._client_gone():
            raise FilterCancelled("The GIMP plug-in went away (cancelled or closed); stopping.")
        now = time.monotonic()
        if now - self._last < _PROGRESS_INTERVAL and fraction < 1.0:
            return
        self._last = now
        try:
            send_message(self._conn, {"type": "progress", "fraction": fraction, "message": message})
        except OSError:
            raise FilterCancelled("The GIMP plug-in went away (cancelled or closed); stopping.") from None

    def _client_gone(self) -> bool:
        """Whether the client closed its end (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self._conn], [], [], 0)
            if not readable:
                return False
            return self._conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


def _idle_timeout_default() -> float:
    text = os.environ.get(IDLE_TIMEOUT_ENV, "")
    try:
        return float(text) if text else DEFAULT_IDLE_TIMEOUT
    except ValueError:
        raise SystemExit(
            f"{IDLE_TIMEOUT_ENV} must be a number of seconds. Received: {IDLE_TIMEOUT_ENV}={text}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m plugin_host._worker``.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m plugin_host._worker", description="neurofilters' GIMP worker.")
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
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        return Worker(args.socket, idle_timeout=idle).serve()
    except NeurofiltersError as error:
        print(f"neurofilters worker: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
