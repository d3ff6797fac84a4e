"""A third-party neurofilters plugin used only by the GIMP tests.

It is found through a real ``neurofilters`` entry point: the folder holding
this module also holds ``nf_gimp_testplugin-0.1.dist-info``, so putting the
folder on ``PYTHONPATH`` makes :mod:`importlib.metadata` discover it exactly as
it discovers an installed distribution.

Its filters are cheap and deterministic (NumPy only) and declare one
parameter of every kind, so the tests can check the GIMP argument of each kind
and that every value reaches the filter unchanged.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from neurofilters.plugin_host import FilterSpec, ModelSpec, NeurofiltersError, Param, hookimpl

#: How often this process loaded the test model (a warm worker loads it once).
LOADS = {"count": 0}

PARAMS = (
    Param("amount", "int", 40, "Strength of the inversion in percent.", minimum=0, maximum=100),
    Param("gain", "float", 1.0, "Multiplies the result.", minimum=0.0, maximum=2.0),
    Param("flip", "bool", False, "Mirror the image left to right."),
    Param("order", "choice", "rgb", "Channel order of the result.", choices=("rgb", "bgr", "Grey Mix")),
    Param("note", "string", "", "Free text; 'fail' makes the filter raise an error, 'summary' report a summary line."),
    Param("texture", "path", "", "Optional image file (only its size in bytes is used)."),
    Param("tint", "colour", "#ff8000", "Colour mixed into the result by 'tint_mix'."),
    Param("tint_mix", "float", 0.0, "How much of the tint colour to mix in.", minimum=0.0, maximum=1.0),
    Param("target", "class_label", 0, "A class id or name (echoed into the noise seed)."),
    Param("layer", "layer", "block1", "A layer name."),
    Param("layers", "layers", "block1:1,block2:0.5", "Layers with weights."),
    Param("model", "model", "nf-test-model", "The model to 'load' (counts loads)."),
    Param("noise", "float", 0.0, "Seeded noise amplitude (tests that the seed arrives).", minimum=0.0, maximum=1.0),
)


def _invert(image: Any, params: dict[str, Any], context: Any) -> Any:
    import numpy as np

    context.load_model(params["model"])
    steps = 4
    result = image.copy()
    for step in range(steps):
        context.progress(step / steps, f"step {step + 1}/{steps}")
    if params["note"] == "fail":
        raise NeurofiltersError("The test filter was asked to fail (note=fail).")
    if params["note"] == "summary":
        context.report(f"inverted by {params['amount']} %")
    amount = params["amount"] / 100.0
    result = (1.0 - amount) * result + amount * (1.0 - result)
    result = result * params["gain"]
    if params["flip"]:
        result = result[:, ::-1]
    if params["order"] == "bgr":
        result = result[:, :, ::-1]
    elif params["order"] == "Grey Mix":
        result = np.repeat(result.mean(axis=2, keepdims=True), 3, axis=2)
    tint = np.asarray(params["tint"], dtype=np.float32)
    result = (1.0 - params["tint_mix"]) * result + params["tint_mix"] * tint
    if params["texture"]:
        result = result * (1.0 - 0.1 * (os.path.getsize(params["texture"]) % 2))
    if params["noise"]:
        label = params["target"]
        stream = label if isinstance(label, int) else sum(map(ord, label))
        result = result + params["noise"] * context.rng(stream).standard_normal(result.shape).astype(np.float32)
    return np.clip(result, 0.0, 1.0).astype(np.float32)


def _crash(image: Any, params: dict[str, Any], context: Any) -> Any:
    context.progress(0.5, "about to crash")
    os.kill(os.getpid(), signal.SIGKILL)  # a real crash of the real worker process
    raise AssertionError("unreachable")


def _slow(image: Any, params: dict[str, Any], context: Any) -> Any:
    import time

    steps = params["steps"]
    for step in range(steps):
        context.progress(step / steps, f"slow step {step + 1}/{steps}")
        time.sleep(0.05)
    return image


def _stall(image: Any, params: dict[str, Any], context: Any) -> Any:
    """Reports nothing for a while: sleeps (slow but alive) or freezes its whole worker process."""
    import time

    context.progress(0.0, f"stalling: {params['mode']}")
    if params["mode"] == "freeze":
        # A wedged worker: the process is alive but nothing in it runs, heartbeat thread included.
        os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(params["seconds"])  # no progress reports meanwhile: only heartbeats show it is alive
    return image


def _thumbnail(image: Any, params: dict[str, Any], context: Any) -> Any:
    factor = params["factor"]
    return image[::factor, ::factor].copy()


def _blend(image: Any, params: dict[str, Any], context: Any) -> Any:
    """Mixes an image parameter into the top-left corner and emits extra outputs (frames, a grey map)."""
    import numpy as np

    result = image.copy()
    overlay = params["overlay"]
    if overlay is not None:
        colour = overlay[:, :, :3] if overlay.shape[2] >= 3 else np.repeat(overlay[:, :, :1], 3, axis=2)
        height, width = min(colour.shape[0], result.shape[0]), min(colour.shape[1], result.shape[1])
        mix = params["mix"]
        result[:height, :width] = (1.0 - mix) * result[:height, :width] + mix * colour[:height, :width]
    for index in range(params["frames"]):
        context.emit(f"frame-{index:05d}", result * (index + 1) / params["frames"])
    if params["grey_map"]:
        context.emit("grey", result.mean(axis=2, keepdims=True))
    given = getattr(context, "given", None)
    if not params["frames"] and given:  # reports what reached the filter as explicitly given
        for name in sorted(given):
            context.emit("given-" + name.replace("_", "-"), result[:1, :1])
    return result.astype(np.float32)


class _TestModel(dict):
    """The test model's handle: a name and a layer table like the zoo's (two good dream targets)."""

    def layer_table(self) -> list[Any]:
        from types import SimpleNamespace

        return [
            SimpleNamespace(name="stem_conv", alias=None, dream_target=False),
            SimpleNamespace(name="block1_add", alias="block1", dream_target=True),
            SimpleNamespace(name="block2_add", alias=None, dream_target=True),
        ]


def _load_model() -> dict[str, str]:
    LOADS["count"] += 1
    return _TestModel(name="nf-test-model")


@hookimpl
def register_models() -> list[ModelSpec]:
    return [ModelSpec("nf-test-model", "Test model", "A stand-in that only counts how often it is loaded.", _load_model)]


@hookimpl
def register_filters() -> list[FilterSpec]:
    return [
        FilterSpec(
            "nf-test-invert",
            "Test Invert",
            "Partial inversion with one parameter of every kind.",
            "Deterministic NumPy filter for the GIMP tests.",
            "Testing",
            PARAMS,
            _invert,
        ),
        FilterSpec(
            "nf-test-crash",
            "Test Crash",
            "Kills its own worker process.",
            "Simulates a worker that dies in the middle of a filter.",
            "Testing",
            (),
            _crash,
        ),
        FilterSpec(
            "nf-test-slow",
            "Test Slow",
            "Takes its time, reporting progress.",
            "Sleeps 50 ms per step; stops at its next progress report when cancelled.",
            "Testing",
            (Param("steps", "int", 100, "Number of 50 ms steps.", minimum=1, maximum=100000),),
            _slow,
        ),
        FilterSpec(
            "nf-test-stall",
            "Test Stall",
            "Sleeps without progress reports, or freezes its worker.",
            "'sleep': a slow filter that reports nothing (heartbeats keep the call alive); "
            "'freeze': stops the worker process with SIGSTOP (the plug-in must time out and kill it).",
            "Testing",
            (
                Param("mode", "choice", "sleep", "What to do.", choices=("sleep", "freeze")),
                Param("seconds", "float", 1.0, "How long to sleep.", minimum=0.0, maximum=3600.0),
            ),
            _stall,
        ),
        FilterSpec(
            "nf-test-blend",
            "Test Blend",
            "An image parameter, grouped and advanced parameters, extra outputs.",
            "Mixes the overlay image into the top-left corner; emits frames and a grey map.",
            "Testing",
            (
                Param("mix", "float", 0.5, "Share of the overlay.", minimum=0.0, maximum=1.0),
                Param("overlay", "image", None, "Image mixed into the top-left corner.", group="Overlay"),
                Param("frames", "int", 0, "Extra outputs frame-00000...", minimum=0, maximum=8, group="Outputs"),
                Param("grey_map", "bool", False, "Emit a one-channel 'grey' output.", group="Outputs", advanced=True),
            ),
            _blend,
        ),
        FilterSpec(
            "nf-test-thumbnail",
            "Test Thumbnail",
            "An analysis output of another size.",
            "Returns every n-th pixel: a smaller image, shown as a new layer.",
            "Testing Analysis",
            (Param("factor", "int", 2, "Keep every n-th pixel.", minimum=1, maximum=8),),
            _thumbnail,
            output="layer",
        ),
    ]
