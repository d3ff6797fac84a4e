"""Helpers of the batch tests (no tests here): a numpy-only test plugin, really
installed as a distribution with entry points, and a runner of the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from plugin_factory import make_distribution

TEST_PLUGIN = '''
import time

from neurofilters.plugin_host import FilterSpec, Param, hookimpl


def noise(image, params, context):
    import numpy as np

    if params["delay"]:
        time.sleep(params["delay"])
    rng = context.rng()
    context.progress(0.5, "mixing")
    mixed = image * (1 - params["strength"]) + rng.random(image.shape, dtype=np.float32) * params["strength"]
    return np.clip(mixed, 0, 1)


def invert(image, params, context):
    return 1.0 - image


def die(image, params, context):
    import os

    if image.mean() > 0.99:  # a white image kills the worker process, like an out-of-memory kill
        os._exit(9)
    return image


def crash(image, params, context):
    raise RuntimeError("deliberate failure for the test")


def tint(image, params, context):
    import numpy as np

    return image * np.asarray(params["colour"], dtype=np.float32)


@hookimpl
def register_filters():
    return [
        FilterSpec(name="bt-noise", title="Noise", summary="Mix in seeded noise.", description="Test filter.",
                   category="Test", run=noise,
                   params=(Param("strength", "float", 0.5, "Share of noise.", minimum=0, maximum=1),
                           Param("delay", "float", 0.0, "Seconds to sleep per image.", minimum=0))),
        FilterSpec(name="bt-invert", title="Invert", summary="Invert.", description="Test filter.",
                   category="Test", run=invert, params=()),
        FilterSpec(name="bt-die", title="Die", summary="Kills its process on white images.", description="Test filter.",
                   category="Test", run=die, params=()),
        FilterSpec(name="bt-crash", title="Crash", summary="Always fails.", description="Test filter.",
                   category="Test", run=crash, params=()),
        FilterSpec(name="bt-tint", title="Tint", summary="Multiply by a colour.", description="Test filter.",
                   category="Test", run=tint, params=(Param("colour", "colour", "#ffffff", "Colour to multiply by."),)),
    ]
'''


def install_test_plugin(root: Path) -> Path:
    """Install the test plugin as a distribution under ``root``; return the folder for PYTHONPATH."""
    return make_distribution(root, "neurofilters-batch-test", {"nf_batch_test_plugin": TEST_PLUGIN})


def plugin_env(site: Path) -> dict[str, str]:
    """Environment in which the CLI finds the test plugin."""
    paths = [str(site), str(Path(__file__).resolve().parents[1])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": ""}


def batch_command() -> list[str]:
    """The real ``neurofilters batch`` command: ``python -m neurofilters.plugin_host batch``."""
    return [sys.executable, "-m", "neurofilters.plugin_host", "batch"]


def run_batch(site: Path, *args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real batch command in a fresh interpreter (in ``cwd`` when given)."""
    return subprocess.run(
        [*batch_command(), *args], capture_output=True, text=True, env=plugin_env(site), timeout=timeout, cwd=cwd
    )


def write_photo(path: Path, size: tuple[int, int] = (24, 16), seed: int = 0, mode: str = "RGB") -> Path:
    """A small random image (``size`` is width x height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    data = (np.random.default_rng(seed).random((size[1], size[0], channels)) * 255).astype(np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(path)
    return path


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every non-hidden file under ``folder`` by relative path, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
