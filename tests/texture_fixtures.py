"""Real texture samples for the texture tests: scikit-image's and GIMP's own patterns (Debian's gimp-data)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


def skimage_textures() -> dict[str, np.ndarray]:
    """scikit-image's brick, grass and gravel as float32 RGB 128 x 128 crops (grey repeated)."""
    import skimage.data

    out = {}
    for name in ("brick", "grass", "gravel"):
        grey = np.asarray(getattr(skimage.data, name)(), np.float32)[:256:2, :256:2] / 255.0
        out[name] = np.repeat(grey[:, :, None], 3, axis=2)
    return out


def gimp_pattern_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GIMP's own patterns, unpacked from Debian's gimp-data package (skips when apt cannot fetch it)."""
    for installed in (Path("/usr/share/gimp/3.0/patterns"), Path("/usr/share/gimp/2.0/patterns")):
        if any(installed.rglob("*.pat")):
            return installed
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("GIMP's patterns need Debian's gimp-data package: apt-get/dpkg are not available here")
    folder = tmp_path_factory.mktemp("gimp-data")
    try:
        subprocess.run(["apt-get", "download", "gimp-data"], cwd=folder, check=True, capture_output=True, timeout=180)
        (deb,) = folder.glob("gimp-data_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(folder / "x")], check=True, capture_output=True, timeout=180)
    except (subprocess.SubprocessError, ValueError, OSError) as error:
        pytest.skip(f"cannot download Debian's gimp-data package for GIMP's patterns: {error}")
    found = sorted((folder / "x").rglob("patterns"))
    if not found:
        pytest.skip("Debian's gimp-data package holds no patterns folder")
    return found[0]


def border_gradient_ratio(image: np.ndarray, band: int | None = None) -> float:
    """Mean gradient magnitude of the grey image in a band along the borders (``band`` px, default a sixteenth
    of the side) over that of the centre (the middle half): 1 for a texture that looks the same at its borders."""
    grey = np.asarray(image, np.float64).mean(axis=2)
    side = min(grey.shape)
    band = band or max(2, side // 16)
    dy, dx = np.gradient(grey)
    magnitude = np.hypot(dy, dx)
    border = np.zeros(grey.shape, bool)
    border[:band] = border[-band:] = True
    border[:, :band] = border[:, -band:] = True
    centre = np.zeros(grey.shape, bool)
    centre[side // 4 : -(side // 4), side // 4 : -(side // 4)] = True
    return float(magnitude[border].mean() / magnitude[centre].mean())
