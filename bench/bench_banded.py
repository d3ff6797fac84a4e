"""Banded convolutions against Keras' own Conv2D on a CPU capped at AVX2, where oneDNN's GEMM kernel declines large layers.

    python bench/bench_banded.py --save          # about 10 minutes on 2 cores, most of it the peer's 512² call
    python bench/bench_banded.py --sizes 384,448 # the sizes under the cap only (a minute)

Peer: ``keras.layers.Conv2D`` as TensorFlow's oneDNN runs it, and ours: :class:`~neurofilters.filters.zoo.banded.BandedConv2D`
with the same weights, both on VGG16's ``block2_conv2`` shape (128 channels in and out, 3 x 3, same padding), one
forward pass and input gradient, in a fresh process each under ``ONEDNN_MAX_CPU_ISA=AVX2`` (how an AVX2 + FMA CPU is
emulated on an AVX-512 machine) with ``ONEDNN_VERBOSE=1``, whose log says which kernel ran each convolution. Sizes,
with the scratch memory oneDNN's GEMM convolution asks for (im2col and the input transposed): 384² (0.70 GiB: under
the bands' limit, both run the same ``x64:gemm:jit`` call), 448² (0.96 GiB: under oneDNN's 1 GiB cap but over the
bands' 0.875 GiB margin, so ours runs two bands where the peer still runs whole) and 512² (1.25 GiB, what
``block2_conv2`` sees at a 1024² input: the peer falls to ``ref:any``). One untimed call
first loads the libraries (at the timed size where the peer stays under the cap, so both calls are warm; at 64²
above it, where a second call in the reference kernel would take minutes more). ``--save`` stores the result under ``"banded"`` in bench/results.json, which the
performance page renders.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine  # noqa: E402

CHANNELS = 128

_CASE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np, tensorflow as tf, keras
    from neurofilters.filters.zoo.banded import BandedConv2D
    kind, size, channels, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cls = BandedConv2D if kind == "banded" else keras.layers.Conv2D
    layer = cls(channels, 3, padding="same")
    layer.build((None, None, None, channels))
    layer.set_weights([np.random.default_rng(0).standard_normal(w.shape).astype(np.float32) * 0.05 for w in layer.get_weights()])

    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(layer(x)))
        return loss, tape.gradient(loss, x)

    x_warm = tf.constant(np.random.default_rng(1).standard_normal((1, warm, warm, channels)).astype(np.float32))
    step(x_warm)
    x = tf.constant(np.random.default_rng(1).standard_normal((1, size, size, channels)).astype(np.float32))
    began = time.perf_counter()
    loss, gradient = step(x)
    checksum = float(tf.reduce_sum(tf.abs(gradient)))
    print("RESULT " + json.dumps({"seconds": time.perf_counter() - began, "loss": float(loss), "gradient_abs_sum": checksum}), flush=True)
    """
)


def _warm_side(size: int) -> int:
    """The side of the untimed first call: ``size`` itself while the plain layer stays under oneDNN's cap there (both
    calls then find oneDNN's kernels made), else 64 (a second call in the reference kernel would take minutes more)."""
    from neurofilters.filters.zoo.banded import ONEDNN_SCRATCH_CAP, scratch_bytes

    return size if scratch_bytes(CHANNELS, (3, 3), size * size, size * size) <= ONEDNN_SCRATCH_CAP else 64


def run_case(kind: str, size: int, timeout: float) -> dict[str, Any]:
    """One process: ``kind`` (``plain`` or ``banded``) at ``size``², the seconds of its call and the kernels oneDNN logged."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1", "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    began = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", _CASE, kind, str(size), str(CHANNELS), str(_warm_side(size))], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "size": size, "seconds": None, "timed_out_after": timeout}
    kernels: collections.Counter[str] = collections.Counter()
    result: dict[str, Any] = {}
    for line in (done.stdout + done.stderr).splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        elif line.startswith("onednn_verbose") and ",exec,cpu,convolution," in line:
            fields = line.split(",")
            kernels[f"{fields[6]} {fields[7]}"] += 1  # implementation, propagation kind
    if done.returncode != 0 or not result:
        raise RuntimeError(f"{kind} at {size}² failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"kind": kind, "size": size, "warm_side": _warm_side(size), **result, "process_seconds": round(time.perf_counter() - began, 2), "kernels": dict(kernels)}


def main() -> None:
    """Run every case and print (and with ``--save`` store) the JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="384,448,512", help="comma-separated sides of the 128-channel input")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a case is given up (recorded as such)")
    parser.add_argument("--save", action="store_true", help='store the result under "banded" in bench/results.json')
    args = parser.parse_args()
    cases = []
    for size in (int(side) for side in args.sizes.split(",")):
        for kind in ("banded", "plain"):
            cases.append(run_case(kind, size, args.timeout))
            print(json.dumps(cases[-1]), file=sys.stderr, flush=True)
    ratios = {}
    for size in sorted({case["size"] for case in cases}):
        ours, peer = (next(c for c in cases if c["size"] == size and c["kind"] == kind) for kind in ("banded", "plain"))
        if ours.get("seconds") and peer.get("seconds"):
            ratios[str(size)] = round(ours["seconds"] / peer["seconds"], 4)
    result = {"bench": "banded", "isa_cap": "AVX2", "cpu": machine.cpu(), "channels": CHANNELS, "cases": cases, "ratio_ours_to_peer": ratios,
              "load_average": list(os.getloadavg())}
    print(json.dumps(result, indent=2))
    if args.save:
        machine.save({"banded": result})


if __name__ == "__main__":
    main()
