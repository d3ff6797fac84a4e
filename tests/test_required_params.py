"""A filter's key input left out is an error before any work, in every front end (``Param(required=True)``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
from neurofilters.gimp_plugin.plan import missing_required
from neurofilters.plugin_host import FilterSpec, DeclarationError, Param, ParameterError, build_registry, validate_params
from neurofilters.plugin_host.cli.docs import markdown_table
from neurofilters.plugin_host.cli.main import main
from neurofilters.plugin_host.gimp.worker import describe_filters

@pytest.fixture()
def photo(tmp_path: Path, chelsea: np.ndarray) -> Path:
    (tmp_path / "in").mkdir()
    path = tmp_path / "in" / "photo.png"
    Image.fromarray((chelsea[::4, ::4] * 255).astype(np.uint8)).save(path)
    return path


def test_required_is_declared_on_image_and_path_parameters_only() -> None:
    Param("style", "image", None, "The style.", required=True)
    Param("table", "path", "", "A table.", required=True)
    with pytest.raises(DeclarationError, match="Only parameters with no default"):
        Param("steps", "int", 3, "Steps.", required=True)
    # a command may require any kind (fit-noise's --class); a filter only images and paths
    Param("steps", "int", None, "Steps.", required=True)
    with pytest.raises(DeclarationError, match="only image and path parameters can be required"):
        FilterSpec("x", "X", "x.", "", "Misc", (Param("steps", "int", None, "Steps.", required=True),), run=lambda *a: a[0])
    with pytest.raises(DeclarationError, match="no default"):
        Param("table", "path", "x.txt", "A table.", required=True)


def test_validation_refuses_a_call_without_a_required_value() -> None:
    params = (Param("style", "image", None, "The style.", required=True), Param("steps", "int", 3, "Steps."))
    with pytest.raises(ParameterError, match=r'"style" is required: an image file\. Received: nothing') as caught:
        validate_params(params, {"steps": 4})
    assert caught.value.param == "style"
    with pytest.raises(ParameterError, match="is required"):
        validate_params(params, {"style": ""})  # an empty value is none
    assert validate_params(params, {"steps": 4}, check_required=False)["style"] is None  # presets, previews


@pytest.mark.parametrize(("name", "flag"), [("add-noise", "--noise"), ("style-transfer", "--style")])
def test_cli_refuses_a_missing_required_image_naming_the_flag(
    name: str, flag: str, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.png"
    assert main(["run", name, str(photo), "-o", str(out), "-q"]) == 2
    error = capsys.readouterr().err
    assert f"{flag} is required: an image file. Received: nothing" in error, error
    assert not out.exists()


def test_batch_refuses_a_missing_required_image(photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["batch", str(photo.parent), "-o", str(tmp_path / "out"), "--filter", "add-noise"]) == 2
    assert "--noise is required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_batch_takes_a_required_image_from_the_params_file(photo: Path, tmp_path: Path) -> None:
    noise = build_registry(autoload=False).get_filter("add-noise").preview_params["noise"]
    settings = tmp_path / "settings.json"
    settings.write_text('{"noise": "%s"}' % noise)
    out = tmp_path / "out"
    assert main(["batch", str(photo.parent), "-o", str(out), "--filter", "add-noise", "--params", str(settings)]) == 0
    assert (out / "photo.png").exists()


def test_python_api_refuses_a_missing_required_image(chelsea: np.ndarray) -> None:
    with pytest.raises(ParameterError, match='"noise" is required'):
        neurofilters.apply("add-noise", chelsea[::8, ::8])


def test_texture_without_a_source_says_the_input_is_the_sample(chelsea: np.ndarray) -> None:
    result = neurofilters.apply("texture", chelsea[::8, ::8], steps=1, octaves=1, precision="float32")
    assert "no --source given: the input itself is the texture sample" in result.summary.splitlines()


def test_gimp_gets_required_in_its_manifest_and_refuses_before_the_worker() -> None:
    info = next(item for item in describe_filters(build_registry(autoload=False))["filters"] if item["name"] == "style-transfer")
    assert [param["name"] for param in info["params"] if param["required"]] == ["style"]
    message = missing_required(info, chosen={})
    assert "'Style'" in message and "choose a layer" in message
    assert missing_required(info, chosen={"style": object()}) == ""


def test_docs_tables_say_required() -> None:
    table = markdown_table(build_registry(autoload=False).get_filter("add-noise"))
    assert "| `--noise` | image | **required** | an image file |" in table
