"""The XCF and OpenRaster files a batch writes, opened by the real GIMP 3.

Runs ``gimp-console-3.0`` in the Debian trixie chroot that ``tests/gimp/gimp_chroot.py``
builds (built here too when absent, as the other GIMP tests do; otherwise reused read-only). GIMP runs in a private mount namespace
(``unshare``) with its own ``/proc`` mount, so nothing is mounted or killed in
the shared chroot and other GIMP tests running at the same time are unaffected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from neurofilters.plugin_host.imageio.layered import read_xcf
from neurofilters.plugin_host.imageio.xcf import write_xcf
from test_batch_support import install_test_plugin, run_batch
from test_layered import sample_image

sys.path.insert(0, str(Path(__file__).resolve().parent / "gimp"))
from gimp_chroot import ensure_chroot, unavailable_reason  # noqa: E402

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

GIMP_CODE = r'''
import json
from gi.repository import Gimp, Gio, Gegl

WORK = "@WORK@"
result = {}
for name in @NAMES@:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(WORK + "/" + name))
    layers = []
    for index, layer in enumerate(image.get_layers()):
        ok, x, y = layer.get_offsets()
        w, h = layer.get_width(), layer.get_height()
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
        raw = f"{name}.{index}.raw"
        open(WORK + "/" + raw, "wb").write(bytes(data))
        layers.append({"name": layer.get_name(), "x": x, "y": y, "w": w, "h": h, "visible": layer.get_visible(),
                       "opacity": layer.get_opacity(), "mode": layer.get_mode().value_nick, "raw": raw})
    result[name] = {"size": [image.get_width(), image.get_height()], "layers": layers}
    image.delete()
open(WORK + "/result.json", "w").write(json.dumps(result))
'''


def _gimp_root() -> Path:
    """The ready chroot, built first when absent (like ``tests/gimp/conftest.py``); skips only where it cannot be used."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"real GIMP 3 tests skipped: {reason}")
    return ensure_chroot()


def open_in_gimp(root: Path, files: list[Path]) -> dict:
    """Copy ``files`` into the chroot, open each in GIMP 3, return layers with their pixels."""
    work_inside = f"/tmp/nf-layered-{uuid.uuid4().hex[:8]}"
    work = root / work_inside.lstrip("/")
    work.mkdir(parents=True)
    try:
        for file in files:
            shutil.copy(file, work / file.name)
        code = GIMP_CODE.replace("@WORK@", work_inside).replace("@NAMES@", repr([f.name for f in files]))
        variables = ["HOME=/root", "LANG=C.UTF-8", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", f"GIMP3_DIRECTORY={work_inside}/profile"]
        script = (
            f"mount -t proc proc {root}/proc && exec timeout -k 5 240 chroot {root} /usr/bin/env -i "
            + " ".join(variables) + " gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b - --quit"
        )
        process = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                 input=code, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0 and (work / "result.json").exists(), process.stdout + process.stderr
        result = json.loads((work / "result.json").read_text())
        for entry in result.values():
            for layer in entry["layers"]:
                raw = np.frombuffer((work / layer["raw"]).read_bytes(), dtype=np.uint8)
                layer["pixels"] = raw.reshape(layer["h"], layer["w"], 4)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_gimp3_opens_batch_xcf_and_ora_outputs_with_their_layers(tmp_path: Path) -> None:
    root = _gimp_root()
    site = install_test_plugin(tmp_path / "site")
    source = write_xcf(tmp_path / "in" / "art.xcf", sample_image())
    for fmt in ("xcf", "ora"):
        done = run_batch(site, str(source), "-o", str(tmp_path / "out"), "--filter", "bt-invert", "--format", fmt)
        assert done.returncode == 0, done.stderr
    opened = open_in_gimp(root, [tmp_path / "out" / "art.xcf", tmp_path / "out" / "art.ora"])
    original = read_xcf(source)
    for name in ("art.xcf", "art.ora"):
        image = opened[name]
        assert image["size"] == [100, 80], name
        assert [(l["name"], l["x"], l["y"], l["visible"]) for l in image["layers"]] == [
            (l.name, l.x, l.y, l.visible) for l in original.layers], name
        assert image["layers"][1]["opacity"] == pytest.approx(60.0, abs=0.5), name
        assert "multiply" in image["layers"][1]["mode"], (name, image["layers"][1]["mode"])
        for before, layer in zip(original.layers, image["layers"], strict=True):
            expected = np.round(before.pixels * 255).astype(np.int16)
            expected[..., :3] = 255 - expected[..., :3]
            got = layer["pixels"].astype(np.int16)
            visible = expected[..., 3] > 0  # colour under zero alpha is not defined
            assert np.abs(got[..., 3] - expected[..., 3]).max() <= 0, name
            assert np.abs(got[visible][:, :3] - expected[visible][:, :3]).max() <= 1, (name, layer["name"])
