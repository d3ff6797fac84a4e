"""A GIMP profile with the neurofilters plug-in installed, inside the GIMP chroot.

Used by the GIMP tests, ``bench/bench_gimp.py`` and the docs screenshot: it
installs the plug-in with the real installer into a fresh GIMP profile under
the chroot's ``/tmp``, writes input pixels there, runs ``gimp_driver.py`` jobs
in ``gimp-console-3.0`` and reads the layers GIMP wrote back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gimp_chroot import GimpChroot

__all__ = ["GimpSession", "TESTPLUGIN_DIR", "batch_code", "plugin_environment"]

HERE = Path(__file__).resolve().parent
#: Folder holding the test-only filter plugin and its dist-info (its entry point).
TESTPLUGIN_DIR = HERE / "testplugin"
_DRIVER = HERE / "gimp_driver.py"


def batch_code(job: Mapping[str, Any]) -> str:
    """The GIMP-side driver with ``job`` prepended (see ``gimp_driver.py``)."""
    return f"JOB = {json.dumps(json.dumps(job))}\n" + _DRIVER.read_text(encoding="utf-8")


def plugin_environment(*, with_test_plugin: bool = True, idle_timeout: float = 120) -> dict[str, str | None]:
    """Environment for installing: entry points on, the test plugin findable, a short worker idle timeout.

    The worker gets this process's ``PYTHONPATH`` too (after the test plugin), so
    the tests run the checkout they were started from, whatever its path (the
    chroot binds every entry, see ``gimp_chroot.python_bind_paths``).

    Returns:
        Variables to set (``None`` = unset).
    """
    own = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path and path != os.fspath(TESTPLUGIN_DIR)]
    paths = ([os.fspath(TESTPLUGIN_DIR)] if with_test_plugin else []) + own
    return {
        "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": None,
        "PYTHONPATH": os.pathsep.join(paths) or None,
        "NEUROFILTERS_WORKER_IDLE_TIMEOUT": str(idle_timeout),
    }


class GimpSession:
    """A GIMP profile and a work folder at ``/tmp/<name>`` inside the chroot.

    Args:
        chroot: The mounted chroot.
        name: Folder name under the chroot's ``/tmp`` (wiped first).
    """

    def __init__(self, chroot: GimpChroot, name: str) -> None:
        self.chroot = chroot
        self.inside = f"/tmp/{name}"
        self.host = chroot.host_path(self.inside)
        if self.host.exists():
            shutil.rmtree(self.host)
        (self.host / "profile").mkdir(parents=True)
        self.profile_inside = f"{self.inside}/profile"
        self.plugin_inside = f"{self.profile_inside}/plug-ins/neurofilters"
        self.runs = 0

    @property
    def profile_host(self) -> Path:
        """The GIMP profile folder, as seen from the host (pass it to the installer)."""
        return self.host / "profile"

    def install(self, python: str = sys.executable) -> Path:
        """Install the plug-in into this profile with the real installer."""
        from neurofilters.plugin_host.gimp.installer import install

        return install(self.profile_host, python=python)

    def manifest(self) -> dict[str, Any]:
        """The installed manifest."""
        return json.loads((self.profile_host / "plug-ins/neurofilters/manifest.json").read_text())

    def write_pixels(self, name: str, array: np.ndarray) -> str:
        """Write raw pixels into the work folder; returns their path inside the chroot."""
        (self.host / name).write_bytes(np.ascontiguousarray(array).tobytes())
        return f"{self.inside}/{name}"

    def image_step(self, pixels: np.ndarray, name: str = "input.raw", precision: str = "U8_NON_LINEAR") -> dict[str, Any]:
        """A driver step creating an image from ``pixels`` (H x W x C, uint8 or float32)."""
        height, width, channels = pixels.shape
        gray = channels in (1, 2)
        alpha = channels in (2, 4)
        base = "GRAY" if gray else "RGB"
        kind = ("GRAYA_IMAGE" if alpha else "GRAY_IMAGE") if gray else ("RGBA_IMAGE" if alpha else "RGB_IMAGE")
        babl = ("Y'" if gray else "R'G'B'") + ("A" if alpha else "") + (" u8" if pixels.dtype == np.uint8 else " float")
        return {
            "do": "image",
            "pixels": self.write_pixels(name, pixels),
            "width": width,
            "height": height,
            "format": babl,
            "type": kind,
            "base": base,
            "precision": precision,
        }

    def run_job(
        self, steps: Sequence[Mapping[str, Any]], *, timeout: float = 300, env: Mapping[str, str] | None = None
    ) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
        """Run driver steps in one GIMP batch session.

        Returns:
            The report (one entry per step done) and the finished GIMP process.
        """
        self.runs += 1
        report = f"{self.inside}/report-{self.runs}.json"
        job = {"report": report, "steps": list(steps)}
        process = self.chroot.gimp_batch(batch_code(job), gimp_dir=self.profile_inside, env=env, timeout=timeout)
        report_path = self.chroot.host_path(report)
        data = json.loads(report_path.read_text()) if report_path.exists() else {"steps": []}
        return data, process

    def read_layer(self, entry: Mapping[str, Any], channels: int, dtype: Any = np.uint8) -> np.ndarray:
        """The pixels of a layer dumped by a ``dump`` step."""
        raw = self.chroot.host_path(entry["path"]).read_bytes()
        return np.frombuffer(raw, dtype=dtype).reshape(entry["height"], entry["width"], channels)


def describe_failure(process: subprocess.CompletedProcess[str], report: Mapping[str, Any]) -> str:
    """Text for an assertion message: GIMP's exit status, its output's tail and the report."""
    return (
        f"GIMP exited with {process.returncode}\n--- stdout ---\n{process.stdout[-3000:]}\n"
        f"--- stderr ---\n{process.stderr[-5000:]}\n--- report ---\n{json.dumps(report)[:3000]}"
    )
