"""XCF files written by the real GIMP 3, read by us; the XCF and ORA we write, opened by the real GIMP 3.

GIMP 3 (``gimp-console-3.0`` in the Debian trixie chroot of ``tests/gimp/gimp_chroot.py``,
built when absent) writes a corpus in the test (``tests/gimp/xcf_corpus.py``): two layers
with offsets and opacity (and a channel and a path, ignored), nested groups, a layer mask, every layer mode, a text layer,
16/32-bit integer, half, float and double images (linear and perceptual), grey and
indexed images, a layer with a non-destructive filter. GIMP also exports every layer's
pixels itself, so each layer we read is compared with GIMP's own export; then the batch
filters the corpus and GIMP opens what it wrote (tree, names, offsets, modes, precision,
pixels). Nothing is mounted in the host's namespace (``GimpChroot`` uses a private one).
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from neurofilters.plugin_host.imageio.layered import Layer, LayeredImage, read_xcf
from test_batch_support import install_test_plugin, run_batch

sys.path.insert(0, str(Path(__file__).resolve().parent / "gimp"))
from gimp_chroot import GimpChroot, ensure_chroot, unavailable_reason  # noqa: E402

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

CORPUS_SCRIPT = Path(__file__).resolve().parent / "gimp" / "xcf_corpus.py"
#: GIMP's precision numbers (``GimpPrecision``) for the component kinds and encodings we read.
PRECISION = {("u8", False): 150, ("u16", True): 200, ("u32", False): 350, ("half", True): 500, ("float", False): 650,
             ("double", True): 700}


class Gimp:
    """A work folder inside the chroot and a way to run the corpus script there."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inside = f"/tmp/nf-xcf-{uuid.uuid4().hex[:8]}"
        self.work = root / self.inside.lstrip("/")
        self.work.mkdir(parents=True)

    def run(self, task: str, files: Sequence[str] = ()) -> None:
        code = (CORPUS_SCRIPT.read_text().replace("@WORK@", self.inside).replace("@TASK@", task)
                .replace("@FILES@", json.dumps(list(files))))
        with GimpChroot(self.root) as chroot:
            done = chroot.gimp_batch(code, gimp_dir=f"{self.inside}/profile-{task}", timeout=240)
        assert done.returncode == 0 and (self.work / "done.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
        (self.work / "done.json").unlink()

    def described(self, name: str) -> dict:
        return json.loads((self.work / f"{name}.json").read_text())

    def pixels(self, entry: dict, key: str = "raw", channels: int = 4) -> np.ndarray:
        data = np.frombuffer((self.work / entry[key]).read_bytes(), dtype=np.uint8)
        return data.reshape(entry["h"], entry["w"], channels) if channels > 1 else data.reshape(entry["h"], entry["w"])


@pytest.fixture(scope="module")
def gimp() -> Iterator[Gimp]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"real GIMP 3 tests skipped: {reason}")
    session = Gimp(ensure_chroot())
    try:
        session.run("write")
        yield session
    finally:
        shutil.rmtree(session.work, ignore_errors=True)


def _walk(entries: list[dict]) -> Iterator[dict]:
    for entry in entries:
        yield entry
        if entry["children"]:
            yield from _walk(entry["children"])


def _layers(image: LayeredImage) -> Iterator[Layer]:
    for layer in image.layers:
        yield from _tree(layer)


def _tree(layer: Layer) -> Iterator[Layer]:
    yield layer
    for child in layer.children or ():
        yield from _tree(child)


def _shape(entries: list[dict]) -> list:
    """GIMP's tree as nested (name, group, x, y, visible, opacity %, mode, masked) tuples."""
    return [((e["name"], e["group"], e["x"], e["y"], e["visible"], round(e["opacity"]), e["mode"], e["mask"] is not None),
             _shape(e["children"]) if e["children"] else None) for e in entries]


def _our_shape(layers: tuple[Layer, ...]) -> list:
    return [((l.name, l.is_group, l.x, l.y, l.visible, round(l.opacity * 100), l.mode, l.mask is not None),
             _our_shape(l.children) if l.children is not None else None) for l in layers]


def _close(got: np.ndarray, expected: np.ndarray, tolerance: int, what: str) -> None:
    """RGBA u8 arrays equal within ``tolerance`` (colour only where alpha > 0: undefined under zero alpha)."""
    got, expected = got.astype(np.int16), expected.astype(np.int16)
    assert got.shape == expected.shape, what
    assert np.abs(got[..., 3] - expected[..., 3]).max() <= tolerance, what
    shown = expected[..., 3] > 0
    if shown.any():
        assert np.abs(got[shown][:, :3] - expected[shown][:, :3]).max() <= tolerance, what


def test_every_layer_equals_gimps_own_export(gimp: Gimp) -> None:
    names = sorted(p.name for p in gimp.work.glob("*.xcf"))
    assert len(names) == 13
    for name in names:
        described = gimp.described(name)
        image = read_xcf(gimp.work / name)
        assert [image.width, image.height] == described["size"], name
        assert PRECISION[(image.precision, image.linear)] == described["precision"], name
        assert _our_shape(image.layers) == _shape(described["layers"]), name
        entries = [e for e in _walk(described["layers"])]
        for ours, theirs in zip(_layers(image), entries, strict=True):
            if theirs["mask"]:  # layers' and groups' masks
                mask = np.round(ours.mask * 255).astype(np.int16)
                assert np.abs(mask - gimp.pixels(theirs, "mask", 1)).max() <= 1, (name, ours.name)
            if theirs["group"]:
                continue
            got = np.round(ours.pixels * 255).astype(np.uint8)
            _close(got, gimp.pixels(theirs), 1, (name, ours.name))
    stored = (gimp.work / "offsets.xcf").read_bytes()
    assert b"saved selection" in stored and b"outline" in stored  # a channel and a path were there, and ignored
    modes = {layer.mode for layer in read_xcf(gimp.work / "modes.xcf").layers}
    assert len(modes) >= 55, sorted(modes)  # every mode GIMP 3 lets a layer have
    assert any(layer.text for layer in read_xcf(gimp.work / "text.xcf").layers)
    nde = read_xcf(gimp.work / "nde.xcf")
    assert len(nde.warnings) == 1 and "'blurred'" in nde.warnings[0] and "'Soft blur'" in nde.warnings[0]
    assert "gegl:gaussian-blur" in nde.warnings[0]


def test_batch_output_opens_in_gimp_with_the_same_tree(gimp: Gimp, tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    inputs = tmp_path / "in"
    inputs.mkdir()
    names = sorted(p.name for p in gimp.work.glob("*.xcf"))
    for name in names:
        shutil.copy(gimp.work / name, inputs / name)
    done = run_batch(site, str(inputs), "-o", str(tmp_path / "out"), "--filter", "bt-invert")
    assert done.returncode == 0, done.stderr
    assert "warning: " in done.stderr and "'Soft blur'" in done.stderr and "'blurred'" in done.stderr
    ora = run_batch(site, str(inputs / "groups.xcf"), str(inputs / "mask.xcf"), "-o", str(tmp_path / "ora"),
                    "--filter", "bt-invert", "--format", "ora")
    assert ora.returncode == 0, ora.stderr
    outputs = [f"out-{name}" for name in names] + ["ora-groups.ora", "ora-mask.ora"]
    for name in names:
        shutil.copy(tmp_path / "out" / name, gimp.work / f"out-{name}")
    for stem in ("groups", "mask"):
        shutil.copy(tmp_path / "ora" / f"{stem}.ora", gimp.work / f"ora-{stem}.ora")
    gimp.run("open", outputs)

    for name in names:
        source, opened = gimp.described(name), gimp.described(f"out-{name}")
        assert opened["size"] == source["size"], name
        assert opened["precision"] == source["precision"], name  # 16-bit in, 16-bit out (grey/indexed become RGB)
        assert _shape(opened["layers"]) == _shape(source["layers"]), name
        for before, after in zip(_walk(source["layers"]), _walk(opened["layers"]), strict=True):
            if before["mask"]:  # layers' and groups' masks kept as masks
                assert np.array_equal(gimp.pixels(after, "mask", 1), gimp.pixels(before, "mask", 1)), (name, before["name"])
            if before["group"]:
                continue
            expected = gimp.pixels(before).copy()
            expected[..., :3] = 255 - expected[..., :3]
            _close(gimp.pixels(after), expected, 1, (name, before["name"]))

    # OpenRaster: groups and their nesting kept; masks (which ORA lacks) multiplied into alpha
    for stem in ("groups", "mask"):
        source, opened = gimp.described(f"{stem}.xcf"), gimp.described(f"ora-{stem}.ora")
        names_of = lambda entries: [(e["name"], e["group"], names_of(e["children"]) if e["children"] else None) for e in entries]  # noqa: E731
        assert names_of(opened["layers"]) == names_of(source["layers"]), stem
        for before, after in zip(_walk(source["layers"]), _walk(opened["layers"]), strict=True):
            if before["group"]:
                continue
            assert (after["x"], after["y"], after["visible"]) == (before["x"], before["y"], before["visible"]), stem
            expected = gimp.pixels(before).astype(np.float64)
            expected[..., :3] = 255 - expected[..., :3]
            if before["mask"]:
                expected[..., 3] = np.round(expected[..., 3] * gimp.pixels(before, "mask", 1) / 255)
            _close(gimp.pixels(after), np.round(expected).astype(np.uint8), 1, (stem, before["name"]))


# -- GIMP 2.10 ---------------------------------------------------------------------------------------
GIMP210_ENV = "NEUROFILTERS_GIMP210_ROOT"


def test_gimp_2_10_files_are_read_equal_to_gimp_2_10s_own_export(tmp_path: Path) -> None:
    """Files GIMP 2.10 itself saves (every precision, RLE, groups, a mask), compared with its own PNG export.

    Needs a Debian 12 root with GIMP 2.10 (which has Script-Fu, no Python), given by
    ``$NEUROFILTERS_GIMP210_ROOT``; build one (about 6 minutes, 700 MB) as root with
    ``debootstrap --variant=minbase bookworm ROOT`` then, inside it, ``apt-get install
    --no-install-recommends gimp``. Skipped where none is given.
    """
    import os
    import subprocess

    from PIL import Image

    root = Path(os.environ.get(GIMP210_ENV, "/nonexistent"))
    if not (root / "usr/bin/gimp-console-2.10").exists():
        pytest.skip(f"no GIMP 2.10 root: set ${GIMP210_ENV} to a Debian 12 root with the gimp package")
    inside = f"/tmp/nf-xcf210-{uuid.uuid4().hex[:8]}"
    work = root / inside.lstrip("/")
    work.mkdir(parents=True)
    try:
        script = (Path(__file__).resolve().parent / "gimp" / "xcf_corpus_210.scm").read_text().replace("@WORK@", inside)
        (work / "corpus.scm").write_text(script)
        command = (f"mount -t proc proc {root}/proc && exec timeout -k 5 240 chroot {root} /usr/bin/env -i HOME=/root "
                   f"LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin GIMP2_DIRECTORY={inside}/profile gimp-console-2.10 -i "
                   f"-b '(load \"{inside}/corpus.scm\")' -b '(gimp-quit 0)'")
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", command],
                              capture_output=True, text=True, timeout=300)
        assert "executed successfully" in done.stdout + done.stderr, done.stdout[-2000:] + done.stderr[-2000:]
        expected_precision = {"u8": ("u8", False), "u16-linear": ("u16", True), "float": ("float", False),
                              "half-linear": ("half", True), "u32": ("u32", False), "double-linear": ("double", True)}
        for name, precision in expected_precision.items():
            image = read_xcf(work / f"{name}.xcf")
            assert (image.precision, image.linear) == precision, name
            tree = [(l.name, l.is_group, l.x, l.y, round(l.opacity, 2), l.mode, l.mask is not None) for l in _layers(image)]
            assert tree == [("outer", True, 5, 7, 1.0, 28, False), ("inner", True, 30, 10, 1.0, 28, False),
                            ("b", False, 30, 10, 1.0, 28, True), ("a", False, 5, 7, 0.6, 30, False),
                            ("bg", False, 0, 0, 1.0, 28, False)], name
            layers = {layer.name: layer for layer in _layers(image) if not layer.is_group}
            for layer_name, layer in layers.items():
                with Image.open(work / f"{name}.{layer_name}.png") as png:
                    exported = np.asarray(png.convert("RGBA"))
                _close(np.round(layer.pixels * 255).astype(np.uint8), exported, 1, (name, layer_name))
            with Image.open(work / f"{name}.bmask.png") as png:
                mask = np.asarray(png.convert("L")).astype(np.int16)
            assert np.abs(np.round(layers["b"].mask * 255).astype(np.int16) - mask).max() <= 1, name
    finally:
        shutil.rmtree(work, ignore_errors=True)
