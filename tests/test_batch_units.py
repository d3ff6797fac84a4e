"""Batch building blocks: templates, seeds, hashes, input discovery, pipeline and parameter files."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.plugin_host import ParameterError
from neurofilters.plugin_host.batch.inputs import discover_inputs
from neurofilters.plugin_host.batch.journal import file_seed, params_hash
from neurofilters.plugin_host.batch.pipeline import load_mapping_file, load_pipeline, single_step
from neurofilters.plugin_host.batch.template import check_template, render_output
from test_batch_support import install_test_plugin, run_batch, write_photo

FIELDS = {"stem": "cat", "ext": "jpg", "name": "cat.jpg", "relpath": "pets/2024", "filter": "deepdream",
          "frame": 0, "index": 3, "seed": 11}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{relpath}/{stem}", "pets/2024/cat.png"),
        ("{filter}/{relpath}/{stem}_{index:04d}", "deepdream/pets/2024/cat_0003.png"),
        ("{stem}.png", "cat.png"),
        ("./{stem}-{ext}", "cat-jpg.png"),
    ],
)
def test_template_renders_inside_outdir(tmp_path: Path, template: str, expected: str) -> None:
    check_template(template)
    assert render_output(template, FIELDS, tmp_path, "png") == tmp_path / expected


@pytest.mark.parametrize("template", ["../{stem}", "/etc/{stem}", "{relpath}/../../{stem}", "a\\..\\{stem}", "~/{stem}", "{nope}", "{stem"])
def test_template_cannot_escape_or_be_malformed(template: str) -> None:
    with pytest.raises(ParameterError, match="Received: --name"):
        check_template(template)


def test_rendered_values_cannot_escape(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="leaving OUTDIR"):
        render_output("{relpath}/{stem}", {**FIELDS, "relpath": "../.."}, tmp_path, "png")
    (tmp_path / "link").symlink_to(tmp_path.parent)
    with pytest.raises(ParameterError, match="through a symlink"):
        render_output("link/{stem}", FIELDS, tmp_path, "png")


def test_seeds_and_hashes_are_stable() -> None:
    assert file_seed(0, "a/b.jpg") == file_seed(0, "a/b.jpg")
    assert file_seed(0, "a/b.jpg") != file_seed(1, "a/b.jpg") != file_seed(0, "a/c.jpg")
    assert 0 <= file_seed(-5, "x") < 2**31
    assert params_hash({"a": 1, "b": (1.5, "x")}) == params_hash({"b": [1.5, "x"], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 1.0}) != params_hash({"a": 2})


def test_discovery_recursion_globs_and_hidden(tmp_path: Path) -> None:
    for rel in ("a.jpg", "b.PNG", "sub/c.jpg", "sub/deep/d.tif", ".hidden/e.jpg", "sub/.f.jpg", "readme.md"):
        write_photo(tmp_path / rel) if not rel.endswith(".md") else (tmp_path / rel).write_text("x")
    flat = discover_inputs([str(tmp_path)])
    assert [str(f.relpath) for f in flat.files] == ["a.jpg", "b.PNG"] and flat.ignored == 1
    deep = discover_inputs([str(tmp_path)], recursive=True, exclude=["deep/*", "*/deep/*"])
    assert [str(f.relpath) for f in deep.files] == ["a.jpg", "b.PNG", "sub/c.jpg"]
    globbed = discover_inputs([str(tmp_path / "**" / "*.jpg"), str(tmp_path / "a.jpg")])
    assert [str(f.relpath) for f in globbed.files] == ["a.jpg", "sub/c.jpg"]  # duplicates dropped, hidden skipped
    assert globbed.roots == [tmp_path]


def test_pipeline_and_params_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_test_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "")
    from neurofilters.plugin_host import get_registry, reset_registry

    reset_registry()
    registry = get_registry()
    good = tmp_path / "p.toml"
    good.write_text('name = "noisy-negative"\nseed = 4\n[[steps]]\nfilter = "bt-noise"\nparams = { strength = 0.2 }\n'
                    '[[steps]]\nfilter = "bt-invert"\n')
    pipeline = load_pipeline(good, registry.get_filter)
    assert pipeline.name == "noisy-negative" and pipeline.seed == 4
    assert [s.spec.name for s in pipeline.steps] == ["bt-noise", "bt-invert"]
    assert pipeline.steps[0].values == {"strength": 0.2, "delay": 0.0}

    bad = tmp_path / "bad.toml"
    bad.write_text('[[steps]]\nfilter = "bt-noise"\nparams = { strength = 3 }\n')
    with pytest.raises(ParameterError, match=r"step 1 \(bt-noise\).*Received: strength=3"):
        load_pipeline(bad, registry.get_filter)
    bad.write_text("steps = []\n")
    with pytest.raises(ParameterError, match="non-empty list of steps"):
        load_pipeline(bad, registry.get_filter)
    bad.write_text("[[steps]]\nfilter = \n")
    with pytest.raises(ParameterError, match="Syntax error in"):
        load_pipeline(bad, registry.get_filter)

    params = tmp_path / "params.json"
    params.write_text('{"strength": 0.9, "delay": 0}')
    step = single_step(registry.get_filter("bt-noise"), {"strength": "0.1"}, params_file=params).steps[0]
    assert step.values == {"strength": 0.1, "delay": 0.0}  # the command line wins over the file
    reset_registry()


def test_yaml_without_pyyaml_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("steps: []\n")
    monkeypatch.setitem(sys.modules, "yaml", None)  # makes 'import yaml' fail, as without PyYAML
    with pytest.raises(ParameterError, match="Reading YAML needs PyYAML.*pip install pyyaml"):
        load_mapping_file(path)


@pytest.mark.skipif(importlib.util.find_spec("yaml") is None, reason="PyYAML is not installed")
def test_yaml_files_are_read_with_pyyaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yml"
    path.write_text("name: soft\nsteps:\n  - filter: bt-noise\n    params: {strength: 0.5}\n")
    assert load_mapping_file(path) == {"name": "soft", "steps": [{"filter": "bt-noise", "params": {"strength": 0.5}}]}


def test_pipeline_runs_through_the_cli(tmp_path: Path) -> None:
    site = install_test_plugin(tmp_path / "site")
    source = write_photo(tmp_path / "in" / "a.png", seed=7)
    pipeline = tmp_path / "neg.toml"
    pipeline.write_text('name = "neg2"\n[[steps]]\nfilter = "bt-invert"\n[[steps]]\nfilter = "bt-noise"\nparams = { strength = 0.0 }\n')
    done = run_batch(site, str(source), "-o", str(tmp_path / "out"), "--pipeline", str(pipeline), "--name", "{filter}_{stem}")
    assert done.returncode == 0, done.stderr
    result = np.asarray(Image.open(tmp_path / "out" / "neg2_a.png"), dtype=np.int16)
    np.testing.assert_allclose(result, 255 - np.asarray(Image.open(source), dtype=np.int16), atol=1)
    params = tmp_path / "strong.toml"
    params.write_text("strength = 1.0\n")
    noisy = run_batch(site, str(source), "-o", str(tmp_path / "out2"), "--filter", "bt-noise", "--params", str(params))
    assert noisy.returncode == 0, noisy.stderr
    rng_image = np.asarray(Image.open(tmp_path / "out2" / "a.png"), dtype=np.float64)
    assert abs(rng_image.mean() - 127.5) < 10  # pure noise: the file's strength 1.0 was used
    mixed = run_batch(site, str(source), "-o", str(tmp_path / "o3"), "--pipeline", str(pipeline), "--strength", "1")
    assert mixed.returncode == 2 and "go into the pipeline file" in mixed.stderr
    assert os.listdir(tmp_path / "in") == ["a.png"]


def test_params_hash_covers_validated_values_not_their_rounded_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from neurofilters.plugin_host import get_registry, reset_registry
    from neurofilters.plugin_host.batch.plan import PlanSettings, build_plan
    from neurofilters.plugin_host.batch.template import DEFAULT_TEMPLATE

    site = install_test_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD", "")
    reset_registry()
    try:
        spec = get_registry().get_filter("bt-tint")
        discovery = discover_inputs([str(write_photo(tmp_path / "in" / "a.png"))])
        settings = PlanSettings(tmp_path / "out", DEFAULT_TEMPLATE)

        def digest(colour: str) -> str:
            task = build_plan(discovery, single_step(spec, {"colour": colour}), settings, None).entries[0].task
            assert task is not None
            return task.params_hash

        # 128.4/255 and 128/255 both print as #800000, but they are different values
        assert digest("128.4,0,0") != digest("128,0,0")
        assert digest("128,0,0") == digest("#800000")  # the same value however it is typed
    finally:
        reset_registry()


# --------------------------------------------------------------------------- hostile input
@pytest.mark.parametrize("template", ["{stem.__class__.__mro__}", "{stem[0]}", "{index:{stem}}", "{seed.real}"])
def test_template_fields_allow_no_attribute_index_or_nested_access(template: str) -> None:
    with pytest.raises(ParameterError, match="plain names, without"):
        check_template(template)
    check_template("{relpath}/{stem}_{index:04d}")  # format specs of the plain fields stay


def test_template_errors_cut_a_huge_template() -> None:
    with pytest.raises(ParameterError) as caught:
        check_template("{nope}" + "x" * 100_000)
    assert len(str(caught.value)) < 600


def test_symlink_loops_follow_one_rule(tmp_path: Path) -> None:
    """Met in a folder (with or without -r) or by a pattern: skipped and reported; named: a usage error."""
    folder = tmp_path / "in"
    write_photo(folder / "a.png")
    write_photo(folder / "sub" / "b.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "sub" / "gone.png").symlink_to(folder / "missing.png")
    flat = discover_inputs([str(folder)])
    assert [f.path.name for f in flat.files] == ["a.png"]
    assert flat.unreadable == [(str(folder / "loop.png"), "a symbolic link loop")]
    deep = discover_inputs([str(folder)], recursive=True)
    assert sorted(f.path.name for f in deep.files) == ["a.png", "b.png"]
    assert sorted(reason for _, reason in deep.unreadable) == ["a symbolic link loop", "a symbolic link to a missing file"]
    globbed = discover_inputs([str(folder / "*.png")])
    assert [f.path.name for f in globbed.files] == ["a.png"] and len(globbed.unreadable) == 1
    with pytest.raises(ParameterError, match="is a symbolic link loop"):
        discover_inputs([str(folder / "loop.png")])


def test_output_names_up_to_255_bytes_are_written(tmp_path: Path) -> None:
    """The temporary name must not push a long (but legal) name over the 255-byte limit."""
    from neurofilters.plugin_host import save_image

    for length in (242, 251):
        target = tmp_path / ("n" * (length - 4) + ".png")
        assert len(target.name.encode()) == length
        save_image(target, np.full((4, 4, 3), 0.5, np.float32))
        assert target.exists()
    assert sorted(p.name[:2] for p in tmp_path.iterdir()) == ["nn", "nn"]  # no temporary left


def test_pipeline_layer_weights_must_be_numbers(tmp_path: Path) -> None:
    from neurofilters.plugin_host import get_registry
    from neurofilters.plugin_host.batch.pipeline import parse_pipeline

    data = {"steps": [{"filter": "deepdream", "params": {"layers": [["block5", None]]}}]}
    with pytest.raises(ParameterError, match='"layers" must be layer names'):
        parse_pipeline(data, get_registry().get_filter)
    data = {"steps": [{"filter": "deepdream", "params": {"octave_scale": 10**400}}]}
    with pytest.raises(ParameterError, match='"octave_scale" must be'):
        parse_pipeline(data, get_registry().get_filter)
    with pytest.raises(ParameterError, match='"seed" must be an integer between 0'):
        parse_pipeline({"seed": -5, "steps": [{"filter": "deepdream"}]}, get_registry().get_filter)


def test_pipeline_and_params_files_record_what_the_user_wrote(tmp_path: Path) -> None:
    from neurofilters.plugin_host import get_registry

    spec = get_registry().get_filter("deepdream")
    params = tmp_path / "p.toml"
    params.write_text('model = "vgg16-hed"\nchroma = 1.0\n')
    step = single_step(spec, {"steps": "3"}, params_file=params).steps[0]
    assert step.values.given == {"model", "chroma", "steps"}
    assert step.values["chroma"] == 1.0


def test_a_damaged_xcf_is_reported_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The batch names the file and says it is damaged (not 'IndexError: tuple index out of range')."""
    from neurofilters.plugin_host.cli.main import main
    from neurofilters.plugin_host.imageio.layered import Layer, LayeredImage
    from neurofilters.plugin_host.imageio.xcf import write_xcf

    pixels = np.random.default_rng(0).random((16, 20, 4)).astype(np.float32)
    good = write_xcf(tmp_path / "good.xcf", LayeredImage(20, 16, (Layer("a", pixels),)))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "short.xcf").write_bytes(good.read_bytes()[:10])
    (tmp_path / "in" / "other.xcf").write_bytes(b"PNG? no: some other file" * 4)
    report = tmp_path / "r.json"
    assert main(["batch", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--filter", "deepdream", "-q",
                 "--report", str(report)]) == 1
    import json

    rows = {Path(row["input"]).name: row for row in json.loads(report.read_text())["files"]}
    assert rows["short.xcf"]["status"] == "failed" and "truncated" in rows["short.xcf"]["error"]
    assert "'other.xcf': it is not an XCF file" in rows["other.xcf"]["error"]
    capsys.readouterr()


def test_a_default_given_explicitly_changes_the_parameter_hash(tmp_path: Path) -> None:
    """``--chroma 1`` can give other bytes than no --chroma (presets), so a rerun must not skip it as done."""
    from neurofilters.plugin_host import get_registry

    spec = get_registry().get_filter("deepdream")
    plain = single_step(spec, {"model": "vgg16-hed"})
    explicit = single_step(spec, {"model": "vgg16-hed", "chroma": "1"})
    other = single_step(spec, {"model": "vgg16-hed", "chroma": "0.5"})
    hashes = {params_hash(p.hash_data()) for p in (plain, explicit, other)}
    assert len(hashes) == 3
    assert "given_defaults" not in plain.hash_data()[0]  # unchanged hashes where nothing is ambiguous
