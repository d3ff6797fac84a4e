"""Nothing a user names is ever overwritten: the host's one guarded writer, through the real command line.

Each case of issue 25 is run as a user would type it (the CLI's ``main`` on real
files); the file named as an input must keep its bytes and the command must
refuse before any work (exit 2). The property test at the end walks every
command and every filter's image parameter with each named path pointed at
each output, directly and through a symlink and a hard link.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurofilters.filters.hallucinate.plugin import PREVIEW_NOISE
from neurofilters.plugin_host import UsageError, get_registry
from neurofilters.plugin_host.cli.main import main


def _photo(path: Path, seed: int = 0, size: tuple[int, int] = (24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _noise(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PREVIEW_NOISE, path)
    return path


def _snapshot(*paths: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in paths}


def _assert_refused(code: int, before: dict[Path, bytes], capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} was changed"
    assert "error:" in err and len(err.strip().splitlines()) == 1, err
    return err


# --------------------------------------------------------------------------- the six cases of the issue


def test_case1_run_output_over_an_image_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo, noise = _photo(tmp_path / "a.png"), _noise(tmp_path / "n.png")
    before = _snapshot(photo, noise)
    code = main(["run", "add-noise", str(photo), "-o", str(noise), "--noise", str(noise), "-q"])
    err = _assert_refused(code, before, capsys)
    assert "--noise" in err
    # the same command with another output works and leaves both files alone
    assert main(["run", "add-noise", str(photo), "-o", str(tmp_path / "out.png"), "--noise", str(noise), "-q"]) == 0
    assert _snapshot(photo, noise) == before


@pytest.mark.parametrize("target", ["input", "noise", "params", "pipeline", "output"])
def test_case2_batch_report_over_a_named_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    folder = tmp_path / "dir"
    image = _photo(folder / "im0.png")
    noise = _noise(tmp_path / "n.png")
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"strength": 0.5}))
    pipeline = tmp_path / "pipe.json"
    pipeline.write_text(json.dumps({"steps": [{"filter": "add-noise", "params": {"noise": str(noise)}}]}))
    out = tmp_path / "out"
    out.mkdir()
    earlier = _photo(out / "im0.png", seed=9)  # a finished output of the same batch
    reports = {"input": image, "noise": noise, "params": params, "pipeline": pipeline, "output": earlier}
    before = _snapshot(image, noise, params, pipeline, earlier)
    what = ["--pipeline", str(pipeline)] if target == "pipeline" else ["--filter", "add-noise", "--noise", str(noise), "--params", str(params)]
    code = main(["batch", str(folder), "-o", str(out), *what, "--report", str(reports[target]), "-q", "--overwrite"])
    _assert_refused(code, before, capsys)


def test_case3_saliency_figure_over_the_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = _photo(tmp_path / "img.png")
    before = _snapshot(photo)
    code = main(["saliency-check", "lite0", str(photo), "--methods", "gradient", "--levels", "1", "--figure", str(photo)])
    assert "input image" in _assert_refused(code, before, capsys)


def test_case4_side_files_over_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photos = tmp_path / "photos"
    files = [_photo(photos / f"im{i}.png", seed=i) for i in range(3)]
    before = _snapshot(*files)
    code = main(["fit-noise", str(photos), "--class", "130", "-o", str(photos / "im0.npz")])
    _assert_refused(code, before, capsys)
    assert not (photos / "im0.npz").exists()

    data = tmp_path / "data"
    cats = [_photo(data / "cats" / f"c{i}.png", seed=i) for i in range(2)]
    dogs = [_photo(data / "dogs" / f"d{i}.png", seed=5 + i) for i in range(2)]
    confusion = _photo(data / "cats" / "m-confusion.png", seed=7)
    before = _snapshot(*cats, *dogs, confusion)
    code = main(["finetune", str(data), "-o", str(data / "cats" / "m.keras"), "--epochs", "1"])
    _assert_refused(code, before, capsys)
    assert not (data / "cats" / "m.keras").exists() and not (data / "cats" / "m.keras.training").exists()


def test_case5_batch_overwrite_never_replaces_an_image_parameter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "b8"
    for index in range(3):
        _photo(folder / f"im{index}.png", seed=index)
    out = tmp_path / "out"
    noise = _noise(out / "im0.png")  # the noise lives where the batch writes im0's output
    before = _snapshot(noise)
    code = main(["batch", str(folder), "-o", str(out), "--filter", "add-noise", "--noise", str(noise), "--overwrite", "-q"])
    err = capsys.readouterr().err
    assert noise.read_bytes() == before[noise], "the --noise file was overwritten"
    assert code == 1 and "--noise" in err, err  # that one output refused, the others written
    assert (out / "im1.png").is_file() and (out / "im2.png").is_file()


def test_case6_atlas_never_replaces_a_users_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "existing_dir"
    site.mkdir()
    index = site / "index.html"
    index.write_text("<p>my own page</p>")
    before = _snapshot(index)
    code = main(["atlas", "lite0", "-o", str(site), "--channels", "1", "--steps", "1"])
    assert "index.html" in _assert_refused(code, before, capsys)
    assert sorted(p.name for p in site.iterdir()) == ["index.html"]


# --------------------------------------------------------------------------- the guard itself


def test_guard_refuses_inputs_through_links_and_allows_its_own_files(tmp_path: Path) -> None:
    from neurofilters.plugin_host import WriteGuard

    source = _photo(tmp_path / "in.png")
    (tmp_path / "sym.png").symlink_to(source)
    os.link(source, tmp_path / "hard.png")
    guard = WriteGuard([("the input", source)], overwrite=True)
    for target in ("in.png", "sym.png", "hard.png"):
        with pytest.raises(UsageError, match="the input"):
            guard.check(tmp_path / target)
    theirs = _photo(tmp_path / "theirs.png", seed=3)
    strict = WriteGuard([("the input", source)])
    with pytest.raises(UsageError, match="--overwrite"):
        strict.check(theirs)
    written = strict.write_text(tmp_path / "ours.txt", "one")
    assert strict.check(written) == written  # its own file: replaceable
    assert WriteGuard().owns(written)  # and so for a later run (the ledger)
    written.write_text("edited by the user")
    assert not WriteGuard().owns(written)  # changed since: the user's again


# --------------------------------------------------------------------------- every named path at every output


def _command_cases(tmp_path: Path) -> list[tuple[str, list[str], list[Path]]]:
    """``(label, argv, named paths)`` where an output of argv is pointed at a named path."""
    photo = _photo(tmp_path / "in" / "photo.png")
    query = _photo(tmp_path / "in" / "query.png", seed=1)
    folder = tmp_path / "folder"
    member = _photo(folder / "f0.png", seed=2)
    _photo(folder / "f1.png", seed=3)
    noise = _noise(tmp_path / "in" / "n.png")
    params = tmp_path / "in" / "params.json"
    params.write_text(json.dumps({"strength": 0.5}))
    data = tmp_path / "data"
    sample = _photo(data / "a" / "x.png", seed=4)
    _photo(data / "b" / "y.png", seed=5)
    batch_out = tmp_path / "bout"
    cases: list[tuple[str, list[str], list[Path]]] = []
    for named in (photo, noise, member, params):
        cases.append(("batch --report", ["batch", str(folder), "-o", str(batch_out), "--filter", "add-noise", "--noise", str(noise),
                                         "--params", str(params), "--report", str(named), "-q"], [named]))
    cases.append(("saliency --figure", ["saliency-check", "lite0", str(photo), "--figure", str(photo)], [photo]))
    cases.append(("explore patches -o", ["explore", "patches", "lite0", "logits", "0", str(folder), "-o", str(member)], [member]))
    for named in (query, member):
        cases.append(("explore similar -o", ["explore", "similar", str(query), str(folder), "--layer", "logits", "-o", str(named)],
                      [named]))
    cases.append(("fit-noise -o", ["fit-noise", str(folder), "--class", "1", "-o", str(folder / "f0.npz")], [member]))
    cases.append(("finetune -o", ["finetune", str(data), "-o", str(data / "a" / "x.keras")], [sample]))
    page = folder / "index.html"  # the user's own page in the folder of images
    page.write_text("<p>mine</p>")
    cases.append(("atlas --images", ["atlas", "lite0", "-o", str(folder), "--images", str(folder)], [member, page]))
    for name, spec in sorted(get_registry().filters.items()):
        for param in spec.params:
            if param.kind == "image":
                cases.append((f"run {name} {param.flag}", ["run", name, str(photo), "-o", str(noise), param.flag, str(noise), "-q"],
                              [noise]))
        cases.append((f"run {name} -o input", ["run", name, str(photo), "-o", str(photo), "-q"], [photo]))
    return cases


@pytest.mark.parametrize("route", ["direct", "symlink", "hardlink"])
def test_every_named_path_pointed_at_every_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], route: str) -> None:
    cases = _command_cases(tmp_path)
    assert len(cases) > 20
    links = tmp_path / "links"
    links.mkdir()
    checked = 0
    for number, (label, argv, named) in enumerate(cases):
        argv = list(argv)
        if route != "direct":  # point the output at the named file through a link instead
            for position, word in enumerate(argv):
                if position > 0 and argv[position - 1] in ("-o", "--report", "--figure") and Path(word).is_file():
                    link = links / f"{number}-{Path(word).name}"
                    (link.symlink_to(Path(word)) if route == "symlink" else os.link(word, link))
                    argv[position] = str(link)
        before = _snapshot(*(path for path in named if path.is_file()))
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"{label}: {argv}\n{err}"
        for path, data in before.items():
            assert path.read_bytes() == data, f"{label}: {path} changed"
        checked += 1
    assert checked == len(cases)

