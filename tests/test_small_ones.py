"""Small things a new user meets: stale flags in the docs, list_filters' repr, 'models' offline column, several inputs per call."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters
from neurofilters.plugin_host import build_registry
from neurofilters.plugin_host.cli.main import build_parser, main

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _every_flag(parser: argparse.ArgumentParser) -> set[str]:
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(option for option in action.option_strings if option.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _every_flag(sub)
    return flags


def test_the_docs_mention_no_flag_that_is_gone() -> None:
    registry = build_registry(autoload=False)
    known = _every_flag(build_parser(registry))
    for spec in registry.filters.values():
        for param in spec.params:
            known |= {param.flag, "--no-" + param.flag[2:]}
    # Not ours, or wrong on purpose: troubleshooting's misspelt --step, GIMP's --verbose, two benchmark scripts'
    # options on lines that do not name the script.
    known |= {"--step", "--verbose", "--batch-sizes", "--lr-grid"}
    stale = []
    for page in [*DOCS.glob("*.md"), *DOCS.glob("filters/*.md")]:
        if page.name == "changelog.md":
            continue  # it names what was removed
        for line in page.read_text().splitlines():
            if "bench/" in line or "docs/make_" in line:
                continue  # the benchmark and figure scripts' own options
            stale += [f"{page.name}: {flag}" for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line) if flag not in known]
    assert stale == []  # before: deepdream.md still showed the removed --frame-dir


def test_list_filters_prints_one_filter_per_line() -> None:
    shown = repr(neurofilters.list_filters())
    lines = shown.splitlines()
    assert len(lines) == len(build_registry(autoload=False).filters)
    assert all(line.lstrip("[ ").startswith("FilterInfo(name=") and len(line) < 250 for line in lines), shown
    assert "Param(" not in shown  # the declarations stay in info.params


def test_models_says_which_work_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "keras" / "models").mkdir(parents=True)
    (tmp_path / "keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"downloaded once")
    assert main(["models"]) == 0
    rows = {line.split()[0]: line.split()[2] for line in capsys.readouterr().out.splitlines() if line[:1].isalpha() and len(line.split()) > 2}
    assert rows["lite0"] == rows["vgg16-hed"] == rows["vgg16"] == "yes"
    assert rows["inception-v3"] == rows["resnet50"] == "no"


@pytest.mark.slow
def test_classify_and_layers_take_several_at_once(tmp_path: Path, chelsea: np.ndarray, coffee: np.ndarray,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, pixels in (("cat.png", chelsea), ("cup.png", coffee)):
        Image.fromarray((pixels * 255).astype(np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    assert main(["classify", *paths, "--top", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{paths[0]}:" and "tiger cat" in out[1] and out[3] == f"{paths[1]}:" and "espresso" in out[4], out
    assert main(["layers", "lite0", "vgg16-hed"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lite0:\n") and "\nvgg16-hed:\n" in out and "block5_expand_act" in out and "block4_conv3" in out
