"""Every bad value is one line: a hypothesis fuzz of what users and peers can send.

Targets: ``validate_params`` for every registered filter, a filter's command-line
flags (``parse_filter_flags`` then validation), pipeline files, seeds and integer
flags, and the GIMP worker's frame reader (``recv_message`` with the worker's
``check_frame``, over a real socket pair). Each must either accept the value or
raise one of the project's errors (one line in the CLI, exit 2); anything else
(``ValueError`` from ``int()``, ``RecursionError``, ``MemoryError``, a hang) is a crash.

CI runs 150 cases per test (derandomised, so CI is repeatable);
``NEUROFILTERS_FUZZ_EXAMPLES=13000`` runs the full pass (4 tests, 52,000 cases; on the
2-core development machine, under load, about 30 minutes: 52,000 passing, 0 failing).
"""

from __future__ import annotations

import json
import os
import socket
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofilters.plugin_host import NeurofiltersError, get_registry, validate_params
from neurofilters.plugin_host.batch.pipeline import parse_pipeline
from neurofilters.plugin_host.cli.args import parse_filter_flags
from neurofilters.plugin_host.core.params import parse_int, parse_seed
from neurofilters.plugin_host.gimp import wire
from neurofilters.plugin_host.gimp.worker import check_frame

EXAMPLES = int(os.environ.get("NEUROFILTERS_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])

#: Text users paste: digits, signs, control characters U+001C-U+001F and others, Unicode digits and spaces.
_ALPHABET = st.sampled_from(list("0123456789+-., :e_xX#abcflnrtu\x1c\x1d\x1e\x1f\x00\t\n \u0661\u00a0\u2003"))
_TEXT = st.one_of(st.text(_ALPHABET, max_size=40), st.text(max_size=20),
                  st.builds(lambda n, s: "9" * n + s, st.integers(250, 6000), st.sampled_from(["", "\x1f", " "])))
_NUMPY = st.one_of(st.integers(-(2**63), 2**63 - 1).map(np.int64), st.booleans().map(np.bool_),
                   st.floats(width=32, allow_nan=True, allow_infinity=True).map(np.float32),
                   st.integers(0, 255).map(np.uint8))
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**300, max_value=10**1000), st.floats(),
                    _TEXT, _NUMPY, st.binary(max_size=8))
_VALUE = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                                                        st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=12)
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=False), _TEXT),
                     lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=12)
_ACCEPTED = (NeurofiltersError,)  # ParameterError, UsageError, RegistryError: one line, exit 2


def _filters() -> list[Any]:
    return sorted(get_registry().filters.values(), key=lambda spec: spec.name)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@FUZZ
@given(st.data())
def test_validate_params_accepts_or_raises_one_error(data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(_filters()))
    names = [param.name for param in spec.params] + ["class", "nope"]
    values = data.draw(st.dictionaries(st.sampled_from(names), st.one_of(_VALUE, st.just(_deep(5000))), max_size=4))
    try:
        validate_params(spec.params, values, check_files=False)
    except _ACCEPTED as error:
        assert "\n" not in str(error).strip() or len(str(error)) < 4000


@FUZZ
@given(st.data())
def test_command_line_flags_accept_or_raise_one_error(data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(_filters()))
    flags = [param.flag for param in spec.params] + ["--no-" + param.flag[2:] for param in spec.params if param.kind == "bool"]
    words = data.draw(st.lists(st.one_of(st.sampled_from(flags), _TEXT), max_size=6))
    try:
        validate_params(spec.params, parse_filter_flags(spec, words), check_files=False)
    except _ACCEPTED:
        pass


@FUZZ
@given(st.data())
def test_pipelines_and_seeds_accept_or_raise_one_error(data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(_filters()))
    step = data.draw(st.one_of(
        st.fixed_dictionaries({"filter": st.one_of(st.just(spec.name), _SCALAR)},
                              optional={"params": st.dictionaries(st.sampled_from([p.name for p in spec.params]), _VALUE, max_size=3)}),
        _VALUE,
    ))
    document = data.draw(st.fixed_dictionaries({"steps": st.one_of(st.lists(st.just(step), min_size=1, max_size=2), _VALUE)},
                                               optional={"seed": _VALUE, "name": _VALUE}))
    try:
        parse_pipeline(document, get_registry().get_filter)
    except _ACCEPTED:
        pass
    seed = data.draw(_VALUE)
    try:
        parse_seed(seed)
    except _ACCEPTED:
        pass
    try:
        parse_int(data.draw(_TEXT), "--tile", 16, 4096)
    except _ACCEPTED:
        pass


def _frame(data: st.DataObject) -> bytes:
    """A frame as a peer might send it: well formed, nearly well formed, or noise."""
    kind = data.draw(st.sampled_from(["noise", "header", "run"]))
    if kind == "noise":
        return data.draw(st.binary(max_size=64))
    if kind == "header":
        body = data.draw(st.one_of(st.binary(max_size=40), st.builds(lambda v: json.dumps(v).encode(), _JSON)))
        claimed = data.draw(st.one_of(st.just(len(body)), st.integers(0, 2**32 - 1)))
        payload = data.draw(st.integers(0, 2**64 - 1))
        return struct.pack("!4sIQ", data.draw(st.sampled_from([wire.MAGIC, b"NFW0"])), claimed, payload) + body
    width, height = data.draw(st.integers(-2, 1 << 21)), data.draw(st.integers(-2, 1 << 21))
    channels = data.draw(st.integers(0, 5))
    header: dict[str, Any] = {"op": "run", "filter": "add-noise", "width": width, "height": height, "channels": channels,
                              "dtype": data.draw(st.sampled_from(["u8", "f32", "f64"])), "values": {}, "seed": data.draw(_JSON)}
    if data.draw(st.booleans()):
        header["images"] = data.draw(st.one_of(_JSON, st.lists(st.fixed_dictionaries(
            {"width": st.integers(1, 1 << 20), "height": st.integers(1, 1 << 20), "channels": st.integers(1, 4),
             "dtype": st.just("u8"), "name": st.just("noise")}), max_size=2)))
    try:
        body = json.dumps(header).encode()
    except ValueError:
        body = b"{}"
    honest = width * height * channels if all(isinstance(n, int) and n > 0 for n in (width, height, channels)) else 0
    payload_size = data.draw(st.one_of(st.just(honest), st.integers(0, 2**40)))
    sent = b"\x00" * min(payload_size, data.draw(st.integers(0, 256)))
    return struct.pack("!4sIQ", wire.MAGIC, len(body), payload_size) + body + sent


@FUZZ
@given(st.data())
def test_worker_frame_reader_refuses_bad_frames_before_allocating(data: st.DataObject) -> None:
    frame = _frame(data)
    sender, receiver = socket.socketpair()
    saved, wire.FIRST_ALLOCATION = wire.FIRST_ALLOCATION, 4096  # what a lying peer's claim may cost before its bytes arrive
    try:
        with sender, receiver:
            receiver.settimeout(5)
            sender.sendall(frame)
            sender.shutdown(socket.SHUT_WR)
            try:
                header, payload = wire.recv_message(receiver, lambda h, n: check_frame(h, n, budget=1 << 30))
            except (wire.ProtocolError, ConnectionError):
                return
            assert isinstance(header, dict) and isinstance(payload, bytearray)
    finally:
        wire.FIRST_ALLOCATION = saved


def test_the_raw_crashes_of_issue_25_are_one_line() -> None:
    from neurofilters.plugin_host import ParameterError

    spec = get_registry().get_filter("deepdream")
    for bad in ("1\x1f", "1\x1c", "9" * 5000, " 1\x1d "):
        with pytest.raises(ParameterError):
            validate_params(spec.params, {"steps": bad})
        with pytest.raises(ParameterError):
            parse_seed(bad)
    with pytest.raises(ParameterError):
        validate_params(spec.params, {"steps": _deep(10000)})  # RecursionError before
    values = validate_params(spec.params, {"steps": np.int64(5), "octaves": np.uint8(2), "step_size": np.float32(0.5)})
    assert values["steps"] == 5 and values["octaves"] == 2 and type(values["steps"]) is int
    hallucinate = get_registry().get_filter("hallucinate")
    assert validate_params(hallucinate.params, {"neuron": np.bool_(True)})["neuron"] is True
    with pytest.raises(ParameterError):
        validate_params(hallucinate.params, {"class": "9" * 5000})
    with pytest.raises(ParameterError):
        validate_params(spec.params, {"step_size": float("nan")})


def test_a_worker_frame_claiming_gigabytes_is_refused_before_it_is_allocated() -> None:
    import resource

    header = json.dumps({"op": "run", "filter": "add-noise", "width": 20000, "height": 20000, "channels": 4,
                         "dtype": "f32", "values": {}}).encode()
    claimed = 20000 * 20000 * 4 * 4  # 6.4 GB, consistent with its header, over a 4 GB budget
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.sendall(struct.pack("!4sIQ", wire.MAGIC, len(header), claimed) + header + b"\0" * 1024)
        sender.shutdown(socket.SHUT_WR)
        with pytest.raises(wire.ProtocolError, match="more than this worker accepts"):
            wire.recv_message(receiver, lambda h, n: check_frame(h, n, budget=4 << 30))
    # A claim within the budget but never sent costs the first allocation, not the claim.
    small = json.dumps({"op": "run", "filter": "add-noise", "width": 20000, "height": 20000, "channels": 4,
                        "dtype": "u8", "values": {}}).encode()
    sender, receiver = socket.socketpair()
    with sender, receiver:
        sender.sendall(struct.pack("!4sIQ", wire.MAGIC, len(small), 20000 * 20000 * 4) + small + b"\0" * 1024)
        sender.shutdown(socket.SHUT_WR)
        with pytest.raises(ConnectionError):
            wire.recv_message(receiver, lambda h, n: check_frame(h, n, budget=4 << 30))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024, f"the claims grew the process by {grown_kib} KiB"
