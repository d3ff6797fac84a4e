"""The GIMP plug-in, driven through a real GIMP 3.0.4 (``gimp-console-3.0`` batch mode and the PDB).

Filters under test: every registered filter for registration; the test-only
plugin ``testplugin/nf_gimp_testplugin.py`` (found through a real entry point)
for behaviour; the built-in ``deepdream`` end to end. Nothing is mocked: GIMP,
the plug-in, the worker and the CLI are the real programs.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gimp_session import describe_failure

import plugin_host

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
}
INVERT = "neurofilters-nf-test-invert"


def _plugin_module() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "gimp_plugin" / "neurofilters.py"
    spec = importlib.util.spec_from_file_location("_nf_gimp_plugin_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLUGIN = _plugin_module()


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
    return subprocess.run([sys.executable, "-m", "plugin_host", *args], capture_output=True, text=True, env=env, timeout=600)


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
        assert [a["name"] for a in arguments[3:]] == [PLUGIN.argument_name(p.name) for p in spec.params] + [
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
                assert argument["default"] == PLUGIN.choice_nicks(list(param.choices))[param.choices.index(param.default)]
            elif param.kind == "model":
                assert set(model_names) <= set(argument["labels"]), where
                assert argument["default"] == param.default, where
            elif param.kind == "colour":
                pass  # GIMP 3.0.4 does not pass colour defaults to other processes: see the tint test
            elif param.kind == "path":
                pass  # a file argument has no default file (empty = none)
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
    assert cli.returncode == 2 and str(error.value) in cli.stderr


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
