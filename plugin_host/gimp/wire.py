"""The wire protocol between the GIMP plug-in and the worker: framing, hello, pixel layouts.

One module serves both ends. The worker imports it as
``neurofilters.plugin_host.gimp.wire``; ``neurofilters gimp install`` copies this
very file beside the plug-in as ``wire.py``, and the plug-in (which runs in
GIMP's own Python, without NumPy or the project) loads it from there. So it
uses the standard library only, and nothing here may import the project.

Every message is a 16-byte frame header ``!4sIQ`` (magic :data:`MAGIC`, JSON
length, payload length), a UTF-8 JSON object, then the raw payload. A payload
holds one or more images one after another, each row-major ``H x W x C``
(``u8``, or little-endian ``f32``), described in the JSON by an *image
header* ``{"width", "height", "channels", "dtype"}`` (plus ``"name"`` for the
extra images). :func:`pack_images` and :func:`split_images` build and cut such
payloads; the float conversion itself (NumPy) stays in the worker.

Hand-written because the alternatives (pickle, a message-queue library) would
either execute what a peer sends or add a dependency GIMP's Python lacks.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

#: Bumped whenever a message changes shape. 3: image parameters and extra outputs travel as images,
#: the run request carries ``given`` and ``preview``.
PROTOCOL_VERSION = 3
MAGIC = b"NFW1"
FRAME = struct.Struct("!4sIQ")
#: Largest JSON header and payload a peer accepts (bytes).
MAX_JSON = 16 * 1024 * 1024
MAX_PAYLOAD = 8 * 1024 * 1024 * 1024
#: Pixel types on the wire and their size in bytes.
DTYPES = {"u8": 1, "f32": 4}

Buffer = Union[bytes, bytearray, memoryview]


class ProtocolError(ValueError):
    """A peer sent something that is not a well-formed message of this protocol."""


# -- framing ------------------------------------------------------------------------------
def send_message(sock: socket.socket, header: Mapping[str, Any], payload: Buffer = b"") -> None:
    """Send one framed message: the JSON ``header``, then the raw ``payload``."""
    body = json.dumps(header, separators=(",", ":")).encode("utf-8")
    view = memoryview(payload).cast("B")
    sock.sendall(FRAME.pack(MAGIC, len(body), view.nbytes) + body)
    if view.nbytes:
        sock.sendall(view)


#: What :func:`recv_exact` allocates before any byte arrived; beyond it the buffer grows (doubling) as bytes
#: arrive, so a peer that claims gigabytes and sends nothing costs this much, not its claim.
FIRST_ALLOCATION = 64 * 1024 * 1024


def recv_exact(sock: socket.socket, size: int) -> bytearray:
    """Exactly ``size`` bytes from ``sock``.

    Raises:
        ConnectionResetError: The peer closed the connection first.
    """
    buffer = bytearray(min(size, FIRST_ALLOCATION))
    received = 0
    while received < size:
        if received == len(buffer):  # grow only once the bytes so far have arrived
            buffer.extend(bytes(min(len(buffer), size - len(buffer))))
        with memoryview(buffer) as view:
            count = sock.recv_into(view[received:], min(len(buffer) - received, 1 << 22))
        if count == 0:
            raise ConnectionResetError(f"The peer closed the connection after {received} of {size} bytes.")
        received += count
    return buffer


def recv_message(
    sock: socket.socket, check: Optional[Callable[[Dict[str, Any], int], None]] = None
) -> Tuple[Dict[str, Any], bytearray]:
    """Receive one framed message.

    Args:
        sock: The connection.
        check: ``check(header, payload_size)``, called after the JSON header is read and
            before any payload byte is received (or allocated); it raises
            :class:`ProtocolError` for a payload the header does not account for or
            that exceeds the receiver's budget.

    Returns:
        The JSON header (an object) and the payload.

    Raises:
        ConnectionError: The peer closed the connection.
        ProtocolError: The bytes are not a message of this protocol.
    """
    magic, json_size, payload_size = FRAME.unpack(bytes(recv_exact(sock, FRAME.size)))
    if magic != MAGIC:
        raise ProtocolError(f"Expected a neurofilters message starting with {MAGIC!r}. Received: {bytes(magic)!r}")
    if json_size > MAX_JSON or payload_size > MAX_PAYLOAD:
        raise ProtocolError(f"Message too large. Received: header={json_size} bytes, payload={payload_size} bytes")
    try:
        header = json.loads(bytes(recv_exact(sock, json_size)).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ProtocolError(f"The message header is not JSON: {type(error).__name__}: {str(error)[:200]}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"Expected a JSON object. Received: {type(header).__name__}")
    if check is not None:
        check(header, payload_size)
    payload = recv_exact(sock, payload_size) if payload_size else bytearray()
    return header, payload


# -- hello --------------------------------------------------------------------------------
def hello(pid: int) -> Dict[str, Any]:
    """The greeting a worker sends on every new connection."""
    return {"type": "hello", "pid": pid, "protocol": PROTOCOL_VERSION}


def check_hello(message: Mapping[str, Any]) -> int:
    """The worker's pid from its greeting (0 when it sent none).

    Raises:
        ProtocolError: Not a greeting, or one of another protocol version (the text says what to do).
    """
    if message.get("type") != "hello" or message.get("protocol") != PROTOCOL_VERSION:
        raise ProtocolError(
            f"The neurofilters worker speaks protocol {message.get('protocol')!r}; this plug-in speaks "
            f"{PROTOCOL_VERSION}. Run 'neurofilters gimp install' with the same neurofilters version and restart GIMP."
        )
    pid = message.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else 0


# -- images -------------------------------------------------------------------------------
def image_header(width: int, height: int, channels: int, dtype: str, name: str = "") -> Dict[str, Any]:
    """The JSON description of one image of a payload."""
    header: Dict[str, Any] = {"width": width, "height": height, "channels": channels, "dtype": dtype}
    if name:
        header["name"] = name
    return header


def image_nbytes(header: Mapping[str, Any]) -> int:
    """The size in bytes of the image ``header`` describes.

    Raises:
        ProtocolError: An unknown pixel type, or a size or channel count out of range.
    """
    width, height, channels, dtype = (header.get(key) for key in ("width", "height", "channels", "dtype"))
    if dtype not in DTYPES:
        raise ProtocolError(f"Pixel type must be one of {', '.join(DTYPES)}. Received: dtype={dtype!r}")
    sizes_ok = all(isinstance(n, int) and not isinstance(n, bool) and 0 < n < 1 << 20 for n in (width, height))
    if not sizes_ok or channels not in (1, 2, 3, 4):
        raise ProtocolError(f"Bad image size. Received: width={width!r}, height={height!r}, channels={channels!r}")
    return width * height * channels * DTYPES[dtype]


def size_error(header: Mapping[str, Any], received: int) -> str:
    """The message for pixels that do not have the size their image header says."""
    what = f" of {header['name']!r}" if header.get("name") else ""
    return (
        f"Expected {image_nbytes(header)} bytes of {header['dtype']} pixels{what} for "
        f"{header['width']}x{header['height']}x{header['channels']}. Received: {received} bytes"
    )


def pack_images(images: Sequence[Tuple[Mapping[str, Any], Buffer]]) -> Tuple[List[Dict[str, Any]], bytes]:
    """Join ``(image header, pixels)`` pairs into one payload.

    Returns:
        The headers (in payload order) and the payload.

    Raises:
        ProtocolError: Some pixels do not have the size their header says.
    """
    headers, chunks = [], []
    for header, pixels in images:
        size = image_nbytes(header)
        if memoryview(pixels).nbytes != size:
            raise ProtocolError(size_error(header, memoryview(pixels).nbytes))
        headers.append(dict(header))
        chunks.append(bytes(pixels))
    return headers, b"".join(chunks)


def split_images(payload: Buffer, headers: Sequence[Mapping[str, Any]]) -> List[memoryview]:
    """Cut a payload into the images ``headers`` describe, in order (views, no copies).

    Raises:
        ProtocolError: The payload is not exactly as long as the headers say.
    """
    view = memoryview(payload).cast("B")
    parts, offset = [], 0
    for header in headers:
        if not isinstance(header, Mapping):
            raise ProtocolError(f"Expected an image header object. Received: {header!r:.100}")
        size = image_nbytes(header)
        parts.append(view[offset : offset + size])
        offset += size
    if offset != view.nbytes and len(headers) == 1:
        raise ProtocolError(size_error(headers[0], view.nbytes))
    if offset != view.nbytes:
        raise ProtocolError(f"Expected {offset} bytes of pixels for {len(headers)} image(s). Received: {view.nbytes} bytes")
    return parts
