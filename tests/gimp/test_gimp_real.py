"""The GIMP plug-in, driven through a real GIMP 3.0.4 (``gimp-console-3.0`` batch mode and the PDB).

Filters under test: every registered filter for registration; the test-only
plugin ``testplugin/nf_gimp_testplugin.py`` (found through a real entry point)
for behaviour; the built-in ``deepdream`` end to end. Nothing is mocked: GIMP,
the plug-in, the worker and the CLI are the real programs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gimp_chroot import ensure_chroot
from gimp_gui import GUI_PACKAGES, GimpGui, image_window_title
from gimp_session import describe_failure

import neurofilters.plugin_host as plugin_host
from neurofilters.gimp_plugin import manifest as plugin_manifest

pytestmark = [pytest.mark.gimp, pytest.mark.slow]

ARG_TYPES = {
    "int": "ParamSpecInt",
    "float": "ParamSpecDouble",
    "bool": "ParamSpecBoolean",
    "choice": "ParamChoice",
    "string": "ParamSpecString",
    "path": "ParamFile",
    "colour": "ParamColor",
    "class_label": "ParamSpecString",
    "layer": "ParamSpecString",
    "layers": "ParamSpecString",
    "model": "ParamChoice",
    "image": "ParamDrawable",
}
INVERT = "neurofilters-nf-test-invert"


def _image(height: int = 48, width: int = 64, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth test picture with some noise, uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([x / width, y / height, 0.5 + 0.5 * np.sin(x / 5.0 + y / 7.0)], axis=2)[:, :, :3]
    if channels == 4:
        base = np.concatenate([base, (0.2 + 0.8 * x / width)[:, :, None]], axis=2)
    noisy = base + 0.05 * rng.standard_normal(base.shape)
    return np.round(np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def _step(report: dict[str, Any], index: int) -> dict[str, Any]:
    return report["steps"][index]


def _ok(process: subprocess.CompletedProcess[str], report: dict[str, Any], steps: int) -> None:
    assert process.returncode == 0 and "batch command executed successfully" in process.stderr + process.stdout, (
        describe_failure(process, report)
    )
    assert len(report["steps"]) == steps, describe_failure(process, report)


def _cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    env.pop("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "neurofilters.plugin_host", *args], capture_output=True, text=True, env=env, timeout=600)


# -- registration --------------------------------------------------------------------------------
def test_every_registered_filter_has_a_procedure_with_its_declared_arguments(installed_gimp):
    procedures = installed_gimp.after_third_party["procedures"]
    registry = installed_gimp.registry
    assert set(procedures) == {f"neurofilters-{name}" for name in registry.filters}
    assert {"deepdream", "nf-test-invert"} <= set(registry.filters)
    model_names = [model.name for model in registry.models.values()]
    for spec in registry.filters.values():
        procedure = procedures[f"neurofilters-{spec.name}"]
        assert procedure["menu_paths"] == [f"<Image>/Filters/Neural/{spec.category}"]
        assert procedure["menu_label"] == f"{spec.title}..."
        assert procedure["image_types"] == "RGB*, GRAY*"
        arguments = procedure["arguments"]
        assert [a["name"] for a in arguments[:3]] == ["run-mode", "image", "drawables"]
        assert [a["name"] for a in arguments[3:]] == [plugin_manifest.argument_name(p.name) for p in spec.params] + [
            "seed",
            "output-mode",
        ]
        for param, argument in zip(spec.params, arguments[3:]):
            where = f"{spec.name}.{param.name}"
            assert argument["type"] == ARG_TYPES[param.kind], where
            assert argument["nick"] == param.label, where
            assert argument["blurb"].startswith(param.help), where
            if param.kind in ("int", "float"):
                assert argument["default"] == pytest.approx(param.default), where
                if param.minimum is not None:
                    assert argument["minimum"] == pytest.approx(param.minimum), where
                if param.maximum is not None:
                    assert argument["maximum"] == pytest.approx(param.maximum), where
            elif param.kind == "choice":
                assert argument["labels"] == list(param.choices), where
                assert argument["default"] == plugin_manifest.choice_nicks(list(param.choices))[param.choices.index(param.default)]
            elif param.kind == "model":
                assert set(model_names) <= set(argument["labels"]), where
                assert argument["default"] == param.default, where
            elif param.kind == "colour":
                pass  # GIMP 3.0.4 does not pass colour defaults to other processes: see the tint test
            elif param.kind in ("path", "image"):
                pass  # a file or drawable argument has no default (empty = none)
            elif param.kind == "bool":
                assert argument["default"] is param.default, where
            else:  # string arguments: the text converts to the declared default
                assert param.convert(argument["default"], check_files=False) == param.default, where
        seed, mode = arguments[-2:]
        assert (seed["minimum"], seed["default"]) == (0, 0)
        assert mode["choices"] == ["replace", "new-layer"]
        assert mode["default"] == ("new-layer" if spec.output == "layer" else "replace")


def test_reinstalling_after_adding_a_third_party_plugin_registers_its_filters(installed_gimp):
    before = set(installed_gimp.before_third_party["procedures"])
    after = set(installed_gimp.after_third_party["procedures"])
    assert before == {f"neurofilters-{name}" for name in installed_gimp.builtin_registry.filters}
    assert not any(name.startswith("neurofilters-nf-test-") for name in before)
    assert after - before == {
        "neurofilters-nf-test-invert",
        "neurofilters-nf-test-crash",
        "neurofilters-nf-test-slow",
        "neurofilters-nf-test-stall",
        "neurofilters-nf-test-blend",
        "neurofilters-nf-test-thumbnail",
    }


def test_registration_reads_the_manifest_in_milliseconds(installed_gimp):
    creates = [line.split() for line in installed_gimp.timings if line.startswith("create ")]
    assert sorted(name for _, name, _ in creates) == sorted(installed_gimp.after_third_party["procedures"])
    slowest = max(float(ms) for _, _, ms in creates)  # since the plug-in file started, gi import included
    assert slowest < 3000, installed_gimp.timings


# -- results --------------------------------------------------------------------------------------
def test_gimp_result_equals_neurofilters_run(installed_gimp, tmp_path, with_test_plugin):
    session = installed_gimp.session
    pixels = _image()
    texture = b"odd-sized texture"
    (session.host / "texture.bin").write_bytes(texture)
    (tmp_path / "texture.bin").write_bytes(texture)
    values = {
        "amount": 70,
        "gain": 1.1,
        "flip": True,
        "order": "Grey Mix",
        "tint": (0.2, 0.4, 0.6),
        "tint_mix": 0.3,
        "target": "tiger cat",
        "layer": "block2",
        "layers": "a:1,b:2.5",
        "model": "nf-test-model",
        "noise": 0.05,
    }
    gimp_args = {
        "amount": 70,
        "gain": 1.1,
        "flip": True,
        "order": "choice-2",  # "Grey Mix" is not a valid GIMP nick; its label stays "Grey Mix"
        "texture": {"file": f"{session.inside}/texture.bin"},
        "tint": {"colour": [0.2, 0.4, 0.6]},
        "tint-mix": 0.3,
        "target": "tiger cat",
        "layer": "block2",
        "layers": "a:1,b:2.5",
        "model": "nf-test-model",
        "noise": 0.05,
        "seed": 1234,
    }
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "run", "procedure": INVERT, "args": gimp_args},
            {"do": "dump", "prefix": f"{session.inside}/equal", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, report, 3)
    assert _step(report, 1)["status"] == "SUCCESS", describe_failure(process, report)
    gimp_result = session.read_layer(_step(report, 2)["layers"][0], 3)

    Image.fromarray(pixels).save(tmp_path / "in.png")
    cli_args = ["run", "nf-test-invert", os.fspath(tmp_path / "in.png"), "-o", os.fspath(tmp_path / "out.png"), "--seed", "1234"]
    for name, value in values.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            cli_args.append(flag)
        else:
            cli_args += [flag, "51,102,153" if name == "tint" else str(value)]
    cli_args += ["--texture", os.fspath(tmp_path / "texture.bin")]
    cli = _cli(cli_args, {"PYTHONPATH": os.environ["PYTHONPATH"]})
    assert cli.returncode == 0, cli.stderr[-3000:]
    cli_result = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))

    difference = np.abs(gimp_result.astype(int) - cli_result.astype(int))
    assert difference.max() <= 1, f"max difference {difference.max()}/255"
    assert np.abs(gimp_result.astype(int) - pixels.astype(int)).mean() > 20  # the filter did change the image

    # The seed travels too: another seed gives another result.
    other, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "run", "procedure": INVERT, "args": {**gimp_args, "seed": 99}},
            {"do": "dump", "prefix": f"{session.inside}/seed", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, other, 3)
    assert np.abs(session.read_layer(_step(other, 2)["layers"][0], 3).astype(int) - gimp_result.astype(int)).max() > 2


def test_an_unset_colour_argument_takes_the_declared_default(installed_gimp):
    """GIMP 3.0.4 hands callers a transparent black default; the plug-in substitutes the declaration's."""
    session = installed_gimp.session
    report, process = session.run_job(
        [
            session.image_step(_image()),
            {"do": "run", "procedure": INVERT, "args": {"tint-mix": 1.0}},
            {"do": "dump", "prefix": f"{session.inside}/tint", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, report, 3)
    assert _step(report, 1)["status"] == "SUCCESS", describe_failure(process, report)
    result = session.read_layer(_step(report, 2)["layers"][0], 3)
    assert np.all(result == np.array([255, 128, 0], np.uint8))  # the declared default #ff8000


def test_second_call_in_one_gimp_session_reuses_the_warm_worker(installed_gimp):
    session = installed_gimp.session
    run = {"do": "run", "procedure": INVERT, "args": {"amount": 30}}
    ping = {"do": "ping", "plugin_dir": session.plugin_inside}
    report, process = session.run_job([session.image_step(_image()), run, ping, run, ping])
    _ok(process, report, 5)
    first, second = _step(report, 2)["status"], _step(report, 4)["status"]
    assert _step(report, 1)["status"] == _step(report, 3)["status"] == "SUCCESS", describe_failure(process, report)
    assert first["pid"] == second["pid"]
    assert second["calls"] == first["calls"] + 1
    assert "nf-test-model" in first["models"] and "nf-test-model" in second["models"]


def test_selection_limits_the_change_and_feathered_edges_blend(installed_gimp, with_test_plugin):
    session = installed_gimp.session
    pixels = _image()
    box = {"x": 10, "y": 8, "width": 30, "height": 20}
    run = {"do": "run", "procedure": INVERT, "args": {"amount": 100}}
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "select", **box},
            run,
            {"do": "dump", "prefix": f"{session.inside}/sel", "format": "R'G'B' u8"},
            session.image_step(pixels, name="input2.raw"),
            {"do": "select", **box, "feather": 8},
            run,
            {"do": "dump", "prefix": f"{session.inside}/feather", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, report, 8)
    assert _step(report, 2)["status"] == _step(report, 6)["status"] == "SUCCESS", describe_failure(process, report)
    hard = session.read_layer(_step(report, 3)["layers"][0], 3).astype(int)
    inside = np.zeros(pixels.shape[:2], bool)
    inside[8:28, 10:40] = True
    assert np.array_equal(hard[~inside], pixels[~inside])
    assert np.abs(hard[inside] - (255 - pixels[inside].astype(int))).max() <= 1

    soft = session.read_layer(_step(report, 7)["layers"][0], 3).astype(int)
    inverted = 255 - pixels.astype(int)
    far = np.ones_like(inside)
    far[0:37, 1:49] = False  # beyond the 8-pixel feather around the box
    assert np.array_equal(soft[far], pixels[far])
    changes = inverted - pixels.astype(int)
    share = np.where(np.abs(changes) > 30, (soft - pixels) / np.where(changes == 0, 1, changes), np.nan)
    edge = np.nanmean(share[8, 12:38])  # the selection's top edge: about half selected
    middle = np.nanmean(share[16:20, 20:30])
    assert 0.2 < edge < 0.8 and middle > 0.9, (edge, middle)


def test_new_layer_mode_adds_exactly_one_layer(installed_gimp, with_test_plugin):
    session = installed_gimp.session
    pixels = _image()
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "run", "procedure": INVERT, "args": {"amount": 100, "output-mode": "new-layer"}},
            {"do": "dump", "prefix": f"{session.inside}/newlayer", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, report, 3)
    assert _step(report, 1)["status"] == "SUCCESS" and _step(report, 1)["layers"] == 2, describe_failure(process, report)
    top, bottom = _step(report, 2)["layers"]
    assert top["name"] == "Background (Test Invert)" and bottom["name"] == "Background"
    assert np.array_equal(session.read_layer(bottom, 3), pixels)
    assert np.abs(session.read_layer(top, 3).astype(int) - (255 - pixels.astype(int))).max() <= 1


def test_alpha_is_kept(installed_gimp, with_test_plugin):
    session = installed_gimp.session
    pixels = _image(channels=4)
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "run", "procedure": INVERT, "args": {"amount": 100}},
            {"do": "dump", "prefix": f"{session.inside}/alpha", "format": "R'G'B'A u8"},
        ]
    )
    _ok(process, report, 3)
    assert _step(report, 1)["status"] == "SUCCESS", describe_failure(process, report)
    result = session.read_layer(_step(report, 2)["layers"][0], 4).astype(int)
    assert np.array_equal(result[:, :, 3], pixels[:, :, 3])
    assert np.abs(result[:, :, :3] - (255 - pixels[:, :, :3].astype(int))).max() <= 1


def test_analysis_output_of_another_size_arrives_as_a_new_layer(installed_gimp):
    session = installed_gimp.session
    pixels = _image()
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "select", "x": 4, "y": 6, "width": 40, "height": 30},
            {"do": "run", "procedure": "neurofilters-nf-test-thumbnail", "args": {"factor": 2}},
            {"do": "dump", "prefix": f"{session.inside}/thumb", "format": "R'G'B' u8"},
        ]
    )
    _ok(process, report, 4)
    assert _step(report, 2)["status"] == "SUCCESS", describe_failure(process, report)
    top, bottom = _step(report, 3)["layers"]
    assert (top["width"], top["height"], top["offsets"]) == (20, 15, [4, 6])
    assert np.array_equal(session.read_layer(top, 3), pixels[6:36:2, 4:44:2])
    assert np.array_equal(session.read_layer(bottom, 3), pixels)


def test_grayscale_and_high_bit_depth_images(installed_gimp):
    session = installed_gimp.session
    gray = _image()[:, :, :1].copy()
    rng = np.random.default_rng(5)
    floats = rng.random((48, 64, 3), dtype=np.float32)  # values no 8-bit image can hold
    run = {"do": "run", "procedure": INVERT, "args": {"amount": 100}}
    report, process = session.run_job(
        [
            session.image_step(gray),
            run,
            {"do": "dump", "prefix": f"{session.inside}/gray", "format": "Y' u8"},
            session.image_step(floats, name="float.raw", precision="FLOAT_NON_LINEAR"),
            run,
            {"do": "dump", "prefix": f"{session.inside}/float", "format": "R'G'B' float"},
        ]
    )
    _ok(process, report, 6)
    assert _step(report, 1)["status"] == _step(report, 4)["status"] == "SUCCESS", describe_failure(process, report)
    gray_result = session.read_layer(_step(report, 2)["layers"][0], 1).astype(int)
    assert np.abs(gray_result - (255 - gray.astype(int))).max() <= 1
    float_result = session.read_layer(_step(report, 5)["layers"][0], 3, np.float32)
    assert np.abs(float_result - (1.0 - floats)).max() < 1e-5  # 8-bit transport would be off by up to 2e-3


# -- errors ---------------------------------------------------------------------------------------
def test_bad_parameter_is_an_execution_error_with_the_cli_message(installed_gimp, tmp_path, with_test_plugin):
    session = installed_gimp.session
    report, process = session.run_job(
        [session.image_step(_image()), {"do": "run", "procedure": INVERT, "args": {"layer": "not a layer!"}}]
    )
    _ok(process, report, 2)
    result = _step(report, 1)
    expected = plugin_host.get_registry().get_filter("nf-test-invert").param_index["layer"]
    with pytest.raises(plugin_host.ParameterError) as error:
        expected.convert("not a layer!")
    assert result["status"] == "EXECUTION_ERROR"
    assert result["error"] == f"Test Invert: {error.value}"

    Image.fromarray(_image()).save(tmp_path / "in.png")
    cli = _cli(
        ["run", "nf-test-invert", os.fspath(tmp_path / "in.png"), "-o", os.fspath(tmp_path / "o.png"), "--layer", "not a layer!"],
        {"PYTHONPATH": os.environ["PYTHONPATH"]},
    )
    # The same check and words; the command line names the flag as typed (--layer), GIMP the parameter.
    assert cli.returncode == 2
    assert "--layer must be a layer name or alias of the model" in cli.stderr and "Received: --layer not a layer!" in cli.stderr
    assert "must be a layer name or alias of the model" in str(error.value)


def test_filter_error_and_crashed_worker_are_reported_and_the_next_call_works(installed_gimp):
    session = installed_gimp.session
    ping = {"do": "ping", "plugin_dir": session.plugin_inside}
    report, process = session.run_job(
        [
            session.image_step(_image()),
            ping,
            {"do": "run", "procedure": INVERT, "args": {"note": "fail"}},
            {"do": "run", "procedure": "neurofilters-nf-test-crash", "args": {}},
            {"do": "run", "procedure": INVERT, "args": {"amount": 10}},
            ping,
        ],
        timeout=240,
    )
    _ok(process, report, 6)
    failed, crashed, recovered = _step(report, 2), _step(report, 3), _step(report, 4)
    assert failed["status"] == "EXECUTION_ERROR"
    assert failed["error"] == "Test Invert: The test filter was asked to fail (note=fail)."
    assert crashed["status"] == "EXECUTION_ERROR"
    assert "worker stopped unexpectedly" in crashed["error"] and "next call starts a fresh worker" in crashed["error"]
    assert recovered["status"] == "SUCCESS", describe_failure(process, report)
    assert _step(report, 5)["status"]["pid"] != _step(report, 1)["status"]["pid"]


def _process_gone(pid: int, timeout: float = 15) -> bool:
    """Whether process ``pid`` ended (GIMP's chroot shares the host's process ids)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_stuck_worker_times_out_is_killed_and_the_next_call_starts_a_fresh_one(installed_gimp, with_test_plugin):
    """Never a hang: a frozen worker (mid-call, or before greeting) fails the call within the timeout."""
    session = installed_gimp.session
    ping = {"do": "ping", "plugin_dir": session.plugin_inside}
    invert = {"do": "run", "procedure": INVERT, "args": {"amount": 10}}
    stall = "neurofilters-nf-test-stall"
    timeouts = {"NEUROFILTERS_GIMP_INACTIVITY_TIMEOUT": "2", "NEUROFILTERS_GIMP_HELLO_TIMEOUT": "2"}
    started = time.monotonic()
    report, process = session.run_job(
        [
            session.image_step(_image()),
            ping,
            # slow but alive: 5 s without a progress report, only heartbeats; must not be killed
            {"do": "run", "procedure": stall, "args": {"mode": "sleep", "seconds": 5.0}},
            # wedged mid-call: the worker stops itself (SIGSTOP) and goes silent
            {"do": "run", "procedure": stall, "args": {"mode": "freeze"}},
            invert,
            ping,
            # wedged between calls: it no longer even greets a new connection
            {"do": "signal", "plugin_dir": session.plugin_inside, "signal": "SIGSTOP"},
            invert,
            invert,
            ping,
        ],
        env=timeouts,
        timeout=240,
    )
    _ok(process, report, 10)  # and GIMP itself exits normally
    first, slow, frozen, recovered, second = (_step(report, i) for i in (1, 2, 3, 4, 5))
    refused, recovered_again, third = _step(report, 7), _step(report, 8), _step(report, 9)
    pids = [first["status"]["pid"], second["status"]["pid"], third["status"]["pid"]]
    assert slow["status"] == "SUCCESS" and slow["seconds"] >= 5, describe_failure(process, report)
    assert frozen["status"] == "EXECUTION_ERROR", describe_failure(process, report)
    log = "Log /tmp/neurofilters-0/w-"
    assert frozen["error"].startswith(f"Test Stall: The neurofilters worker (pid {pids[0]}) sent nothing for 2 s"), frozen
    assert f"It was killed (pid {pids[0]}); the next call starts a fresh worker. {log}" in frozen["error"], frozen
    assert frozen["seconds"] < 10, frozen
    assert recovered["status"] == "SUCCESS", describe_failure(process, report)
    assert _step(report, 6)["pid"] == pids[1]
    assert refused["status"] == "EXECUTION_ERROR", describe_failure(process, report)
    assert "accepted the connection but did not answer within 2 s (NEUROFILTERS_GIMP_HELLO_TIMEOUT)" in refused["error"]
    assert f"It was killed (pid {pids[1]})" in refused["error"] and log in refused["error"], refused
    assert refused["seconds"] < 10, refused
    assert recovered_again["status"] == "SUCCESS", describe_failure(process, report)
    assert len(set(pids)) == 3
    assert _process_gone(pids[0]) and _process_gone(pids[1])
    assert time.monotonic() - started < 120


# -- undo ---------------------------------------------------------------------------------------------
UNDO_BATCH = r"""
import json, time
import gi
gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp

JOB = json.loads(JOB_TEXT)
W, H, FORMAT = JOB["width"], JOB["height"], "R'G'B' u8"
RECT = Gegl.Rectangle.new(0, 0, W, H)
pdb = Gimp.get_pdb()


def new_image(paths):
    image = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
    layers = []
    for index, path in enumerate(paths):
        layer = Gimp.Layer.new(image, f"L{index}", W, H, Gimp.ImageType.RGB_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
        image.insert_layer(layer, None, 0)
        buffer = layer.get_buffer()
        buffer.set(RECT, FORMAT, open(path, "rb").read())
        buffer.flush()
        layers.append(layer)
    image.set_selected_layers(layers)
    # An empty undo history and a clean image: afterwards the filter call is all the stack holds.
    image.undo_disable()
    image.undo_enable()
    image.clean_all()
    return image, Gimp.Display.new(image)


def dump(image, tag):
    entries = []
    for layer in image.get_layers():
        path = f"{JOB['folder']}/{tag}-{image.get_id()}-{layer.get_name().replace(' ', '_')}.raw"
        open(path, "wb").write(bytes(layer.get_buffer().get(RECT, 1.0, FORMAT, Gegl.AbyssPolicy.CLAMP)))
        entries.append({"name": layer.get_name(), "path": path, "width": W, "height": H})
    return entries


report = []
for index, case in enumerate(JOB["cases"]):  # one image at a time: its window is the active one
    image, display = new_image(case["layers"])
    procedure = pdb.lookup_procedure(case["procedure"])
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_selected_layers())
    for name, value in case["args"].items():
        config.set_property(name, value)
    status = procedure.run(config).index(0)
    entry = {"id": image.get_id(), "status": status.value_nick, "dirty": image.is_dirty(), "filtered": dump(image, "filtered")}
    Gimp.displays_flush()
    open(f"{JOB['folder']}/undo-filtered-{index}.json", "w").write(json.dumps(entry))
    deadline = time.monotonic() + JOB["wait"]
    while image.is_dirty() and time.monotonic() < deadline:
        time.sleep(0.1)  # meanwhile the test presses Ctrl+Z once in the image window
    entry["dirty_after_undo"] = image.is_dirty()
    entry["undone"] = dump(image, "undone")
    report.append(entry)
    display.delete()
open(JOB["done"], "w").write(json.dumps(report))
"""


def test_one_undo_restores_the_image_exactly(installed_gimp, with_test_plugin):
    """One Ctrl+Z, pressed in GIMP's own window, undoes a whole filter call (two layers, both modes).

    GIMP 3.0's PDB cannot perform an undo (it has no such procedure), so this runs the
    real GIMP user interface on a virtual display and presses the keys.
    """
    ensure_chroot(extra_packages=GUI_PACKAGES)
    session = installed_gimp.session
    originals = [_image(seed=11), _image(seed=12)]
    paths = [session.write_pixels(f"undo-{index}.raw", pixels) for index, pixels in enumerate(originals)]
    cases = [
        {"procedure": INVERT, "args": {"amount": 100, "output-mode": "replace"}, "layers": paths},
        {"procedure": INVERT, "args": {"amount": 100, "output-mode": "new-layer"}, "layers": paths},
    ]
    job = {
        "width": 64,
        "height": 48,
        "folder": session.inside,
        "cases": cases,
        "done": f"{session.inside}/undo-done.json",
        "wait": 20,
    }
    for stale in session.host.glob("undo-*.json"):
        stale.unlink()
    code = f"JOB_TEXT = {json.dumps(json.dumps(job))}\n" + UNDO_BATCH
    with GimpGui(session, code) as gui:
        for index in range(len(cases)):
            filtered = gui.wait_for_file(f"{session.inside}/undo-filtered-{index}.json")
            assert filtered["status"] == "success" and filtered["dirty"], (filtered, gui.log())
            gui.press(gui.window(image_window_title(filtered["id"])), "ctrl+z")
        done = gui.wait_for_file(job["done"], timeout=60)

    by_name = {"L0": originals[0], "L1": originals[1]}
    replaced, added = done
    # Before the undo: both layers inverted in place; two new inverted layers above the originals.
    assert [layer["name"] for layer in replaced["filtered"]] == ["L1", "L0"]
    for layer in replaced["filtered"]:
        assert np.abs(session.read_layer(layer, 3).astype(int) - (255 - by_name[layer["name"]].astype(int))).max() <= 1
    assert [layer["name"] for layer in added["filtered"]] == ["L1 (Test Invert)", "L1", "L0 (Test Invert)", "L0"]
    # After one Ctrl+Z each: the image is clean again, with its own layers and pixels, bit for bit.
    for entry in done:
        assert not entry["dirty_after_undo"], entry
        assert [layer["name"] for layer in entry["undone"]] == ["L1", "L0"], entry
        for layer in entry["undone"]:
            assert np.array_equal(session.read_layer(layer, 3), by_name[layer["name"]]), layer


def test_image_parameter_from_a_layer_and_extra_outputs_as_new_layers(installed_gimp, with_test_plugin):
    """A layer chosen for an image parameter reaches the filter; emitted outputs become layers above the result."""
    session = installed_gimp.session
    pixels = _image(seed=21)
    overlay = _image(height=10, width=20, channels=4, seed=22)
    steps = [
        session.image_step(pixels),
        {
            "do": "layer", "name": "Overlay", "pixels": session.write_pixels("overlay.raw", overlay),
            "width": 20, "height": 10, "format": "R'G'B'A u8", "type": "RGBA_IMAGE",
        },
        {
            "do": "run",
            "procedure": "neurofilters-nf-test-blend",
            "args": {"overlay": {"layer": "Overlay"}, "mix": 0.75, "frames": 2, "grey-map": True, "seed": 4},
        },
        {"do": "dump", "prefix": f"{session.inside}/blend", "format": "R'G'B' u8"},
    ]
    report, process = session.run_job(steps)
    _ok(process, report, 4)
    assert _step(report, 2)["status"] == "SUCCESS", describe_failure(process, report)
    layers = _step(report, 3)["layers"]
    assert [layer["name"] for layer in layers] == [
        "Background (Test Blend: grey)",
        "Background (Test Blend: frame-00001)",
        "Background (Test Blend: frame-00000)",
        "Background",
        "Overlay",
    ]
    spec = plugin_host.get_registry().get_filter("nf-test-blend")
    context = plugin_host.FilterContext(seed=4)
    values = {"overlay": overlay.astype(np.float32) / 255, "mix": 0.75, "frames": 2, "grey_map": True}
    expected = plugin_host.apply_filter(spec, pixels.astype(np.float32) / 255, values, context=context)
    assert np.abs(session.read_layer(layers[3], 3).astype(int) - np.round(expected * 255)).max() <= 1
    assert np.abs(session.read_layer(layers[3], 3)[:10, :20].astype(int) - pixels[:10, :20]).max() > 10  # the overlay arrived
    for layer in layers[:3]:
        want = context.outputs[layer["name"].split(": ")[1].rstrip(")")]
        got = session.read_layer(layer, 3).astype(int)
        assert np.abs(got - np.round(np.broadcast_to(want, (48, 64, 3)) * 255)).max() <= 1, layer["name"]


DIALOG_BATCH = """
import json
from gi.repository import Gimp, Gio
image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("{photo}"))
Gimp.Display.new(image)
layer = image.get_layers()[0]
image.set_selected_layers([layer])
for index, name in enumerate({procedures}):
    procedure = Gimp.get_pdb().lookup_procedure(name)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    result = procedure.run(config)
    with open("{done}-%d.json" % index, "w") as handle:
        handle.write(json.dumps({{"status": result.index(0).value_nick, "layers": len(image.get_layers())}}))
"""


def test_dialogs_group_parameters_preview_without_blocking_and_log_no_warnings(installed_gimp, with_test_plugin, tmp_path):
    """Real dialogs under Xvfb: every widget kind (test filter) and DeepDream's, without GTK/GIMP warnings.

    The test filter's dialog previews in the worker while the dialog keeps answering (a window dump
    works meanwhile) and offers its model's good layers; DeepDream's dialog (33 parameters: GIMP
    logged a CRITICAL and a missing mnemonic per control before) opens and cancels cleanly.
    """
    ensure_chroot(extra_packages=(*GUI_PACKAGES, "x11-apps"))
    session = installed_gimp.session
    Image.fromarray(_image(height=384, width=512, seed=5)).save(session.host / "dialog.png")
    done = f"{session.inside}/dialog-done"
    calls = f"{session.inside}/dialog-calls.jsonl"
    for stale in [calls, *(f"{done}-{index}.json" for index in range(2))]:
        session.chroot.host_path(stale).unlink(missing_ok=True)
    procedures = [INVERT, "neurofilters-deepdream"]
    code = DIALOG_BATCH.format(photo=f"{session.inside}/dialog.png", procedures=procedures, done=done)
    calls_path = session.chroot.host_path(calls)

    def dump(window: str, name: str) -> np.ndarray:
        picture = gui.grab(window, name)
        Image.fromarray(picture).save(tmp_path / f"{name}.png")
        return picture

    with GimpGui(session, code, env={"NEUROFILTERS_GIMP_LOG": calls}) as gui:
        dialog = gui.window("^Test Invert")
        time.sleep(1.0)
        gui.press(dialog, "alt+p")  # Preview
        busy = dump(dialog, "invert-busy")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (calls_path.exists() and '"status": "done"' in calls_path.read_text()):
            time.sleep(0.3)
        time.sleep(0.5)
        dump(dialog, "invert-preview")
        gui.press(dialog, "Escape")  # Cancel: nothing changes
        first = gui.wait_for_file(f"{done}-0.json", timeout=60)
        dialog = gui.window("^DeepDream")
        time.sleep(1.5)
        dump(dialog, "deepdream")
        gui.press(dialog, "Escape")
        second = gui.wait_for_file(f"{done}-1.json", timeout=60)
        log = gui.log_path.read_text(errors="replace")
    assert first == second == {"status": "cancel", "layers": 1}, log[-3000:]
    assert busy.shape[0] > 200 and busy.shape[1] > 300
    entries = [json.loads(line) for line in calls_path.read_text().splitlines()]
    previews = [entry for entry in entries if entry.get("preview") == "nf-test-invert"]
    assert [entry["status"] for entry in previews] == ["started", "done"], (previews, log[-3000:])
    assert previews[0]["size"] == previews[1]["size"] == [256, 192]  # the 512 x 384 layer, downscaled
    assert previews[0]["given"] == []  # nothing changed in the dialog: presets decide
    offered = [entry for entry in entries if entry.get("layers") == "nf-test-model"]
    assert offered and offered[-1]["offered"] == ["block1", "block2_add"], entries
    # The plug-in's stderr goes to GIMP's log: GTK/GLib warnings, GIMP's mnemonic checks, tracebacks.
    problems = [
        line for line in log.splitlines()
        if "CRITICAL" in line or "mnemonic" in line or "Traceback" in line
        or ("WARNING" in line and "neurofilters" in line.lower())
    ]
    assert not problems, "\n".join(problems[:20])


# -- a real neural filter ---------------------------------------------------------------------------
def test_deepdream_through_gimp_equals_neurofilters_run(installed_gimp, tmp_path):
    session = installed_gimp.session
    pixels = _image(seed=3)
    settings = {"steps": 2, "octaves": 1, "jitter": 8}
    report, process = session.run_job(
        [
            session.image_step(pixels),
            {"do": "run", "procedure": "neurofilters-deepdream", "args": {**settings, "seed": 7}},
            {"do": "dump", "prefix": f"{session.inside}/dream", "format": "R'G'B' u8"},
        ],
        timeout=600,
    )
    _ok(process, report, 3)
    assert _step(report, 1)["status"] == "SUCCESS", describe_failure(process, report)
    gimp_result = session.read_layer(_step(report, 2)["layers"][0], 3)

    Image.fromarray(pixels).save(tmp_path / "in.png")
    args = ["run", "deepdream", os.fspath(tmp_path / "in.png"), "-o", os.fspath(tmp_path / "out.png"), "--seed", "7"]
    for name, value in settings.items():
        args += [f"--{name}", str(value)]
    cli = _cli(args, {})
    assert cli.returncode == 0, cli.stderr[-3000:]
    cli_result = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    difference = np.abs(gimp_result.astype(int) - cli_result.astype(int))
    assert difference.max() <= 1, f"max difference {difference.max()}/255"
    assert math.sqrt(np.mean((gimp_result.astype(float) - pixels) ** 2)) > 1.0  # it dreamed something
