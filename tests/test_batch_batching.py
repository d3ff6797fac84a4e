"""``--batch-size``: equal-size images through one filter call, with exactly the one-by-one bytes.

The batch-capable test filters below are numpy only and installed as a real
plugin distribution; they log the size of every batched call so the tests see
the grouping. DeepDream is tested for real (embedded Lite0, small images).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import neurofilters.plugin_host as plugin_host
from plugin_factory import make_distribution
from neurofilters.plugin_host import DeclarationError, FilterContext, FilterSpec, ModelCache, Param, validate_params
from neurofilters.plugin_host.batch.journal import JOURNAL_NAME
from neurofilters.filters.deepdream.plugin import deepdream_spec
from neurofilters.plugin_host.core.call import resolve_presets
from test_batch_support import batch_command, plugin_env, tree_bytes, write_photo

BATCH_PLUGIN = '''
import json
import os
import time

from neurofilters.plugin_host import FilterSpec, Param, hookimpl


def _log(count):
    path = os.environ.get("NF_BATCH_LOG")
    if path:
        with open(path, "a") as stream:
            stream.write(json.dumps({"pid": os.getpid(), "size": count}) + "\\n")


def _check(image):
    if image.mean() < 0.02:
        raise ValueError("image too dark for bb-noise")


def noise(image, params, context):
    import numpy as np

    _check(image)
    time.sleep(params["delay"])
    grain = context.rng().random(image.shape, dtype=np.float32)
    return image * np.float32(1 - params["strength"]) + grain * np.float32(params["strength"])


def noise_batch(images, params, contexts):
    import numpy as np

    _log(len(images))
    for image in images:
        _check(image)  # one dark image spoils the whole call
    time.sleep(params["delay"] * len(images))
    contexts[0].progress(0.5, "mixing")
    stack = np.stack(images)
    grain = np.stack([context.rng().random(image.shape, dtype=np.float32) for image, context in zip(images, contexts)])
    return list(stack * np.float32(1 - params["strength"]) + grain * np.float32(params["strength"]))


def die(image, params, context):
    if image.mean() > 0.99:  # a white image kills the worker process, like an out-of-memory kill
        os._exit(9)
    return 1.0 - image


def die_batch(images, params, contexts):
    _log(len(images))
    return [die(image, params, context) for image, context in zip(images, contexts)]


@hookimpl
def register_filters():
    return [
        FilterSpec(name="bb-noise", title="Noise", summary="Seeded noise, batchable.", description="Test filter.",
                   category="Test", run=noise, batch_run="nf_batching_test_plugin:noise_batch",
                   params=(Param("strength", "float", 0.5, "Share of noise.", minimum=0, maximum=1),
                           Param("delay", "float", 0.0, "Seconds to sleep per image.", minimum=0))),
        FilterSpec(name="bb-die", title="Die", summary="Kills its process on white images.",
                   description="Test filter.", category="Test", run=die, batch_run=die_batch, params=()),
    ]
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_distribution(tmp_path_factory.mktemp("batching-site"), "neurofilters-batching-test",
                             {"nf_batching_test_plugin": BATCH_PLUGIN})


def _run(site: Path, *args: str, log: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = plugin_env(site)
    if log is not None:
        env["NF_BATCH_LOG"] = str(log)
    return subprocess.run([*batch_command(), *args], capture_output=True, text=True, env=env, timeout=timeout)


def _sizes(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [json.loads(line)["size"] for line in log.read_text().splitlines()]


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- declaration and flag
def _spec(**changes: object) -> FilterSpec:
    values: dict = {"name": "x", "title": "X", "summary": "s", "description": "", "category": "c", "params": (),
                    "run": lambda image, params, context: image}
    return FilterSpec(**{**values, **changes})


def test_batch_run_is_declared_like_run() -> None:
    assert _spec().batch_run is None and _spec().batch_runner() is None
    batch = lambda images, params, contexts: images  # noqa: E731
    assert _spec(batch_run=batch).batch_runner() is batch
    assert _spec(batch_run="json:dumps").batch_runner() is json.dumps  # imported on first use
    with pytest.raises(DeclarationError, match=r"batch_run must be None, callable or 'module:function'\. Received: batch_run=42"):
        _spec(batch_run=42)
    deepdream = plugin_host.build_registry(autoload=False).get_filter("deepdream")
    assert deepdream.batch_run == "neurofilters.filters.deepdream.batched:run_batch"  # a string: listing stays light


def test_batch_size_flag_is_checked_and_explained(site: Path, tmp_path: Path) -> None:
    write_photo(tmp_path / "in" / "a.png")
    bad = _run(site, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--filter", "bb-noise", "--batch-size", "0")
    assert bad.returncode == 2
    assert "--batch-size must be an integer between 1 and 256. Received: --batch-size 0" in bad.stderr
    assert not (tmp_path / "out").exists()
    shown = _run(site, "--help", "--filter", "bb-noise")
    assert shown.returncode == 0 and "--batch-size N" in shown.stdout and "identical" in shown.stdout


# --------------------------------------------------------------------------- grouping, fallback, jobs, resume
@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """Files in plan order: 4 RGB 32x24, one 40x24, one RGBA 32x24, 2 RGB 32x24."""
    root = tmp_path / "mixed"
    for i in range(4):
        write_photo(root / f"a{i:02d}.png", size=(32, 24), seed=i)
    write_photo(root / "a04.png", size=(40, 24), seed=4)
    write_photo(root / "a05.png", size=(32, 24), seed=5, mode="RGBA")
    write_photo(root / "a06.png", size=(32, 24), seed=6)
    write_photo(root / "a07.jpg", size=(32, 24), seed=7)
    return root


def test_consecutive_equal_shapes_are_grouped_and_bytes_match_one_by_one(site: Path, mixed: Path, tmp_path: Path) -> None:
    args = [str(mixed), "--filter", "bb-noise", "--strength", "0.3", "--seed", "3", "-q"]
    one = _run(site, *args, "-o", str(tmp_path / "one"), "--batch-size", "1", log=tmp_path / "one.log")
    assert one.returncode == 0, one.stderr
    assert _sizes(tmp_path / "one.log") == []  # --batch-size 1 never calls batch_run
    report = tmp_path / "report.json"
    three = _run(site, *args, "-o", str(tmp_path / "three"), "--batch-size", "3", "--report", str(report),
                 log=tmp_path / "three.log")
    assert three.returncode == 0, three.stderr
    # a00-a02 together, a03 alone (a04 has another size), a04 alone, a05 alone (alpha), a06+a07 together
    assert _sizes(tmp_path / "three.log") == [3, 2]
    assert tree_bytes(tmp_path / "three") == tree_bytes(tmp_path / "one")
    data = _report(report)
    assert data["counts"] == {"ok": 8}
    assert all(row["seconds"] > 0 for row in data["files"])  # a batch's time is shared by its files
    with Image.open(tmp_path / "three" / "a05.png") as image:
        assert image.mode == "RGBA"


def test_a_bad_file_in_a_batch_fails_alone(site: Path, mixed: Path, tmp_path: Path) -> None:
    Image.new("RGB", (32, 24), (0, 0, 0)).save(mixed / "a01.png")  # too dark: the filter raises
    (mixed / "a06.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # cannot be decoded
    args = [str(mixed), "--filter", "bb-noise", "--seed", "3", "-q"]
    one = _run(site, *args, "-o", str(tmp_path / "one"), "--batch-size", "1")
    assert one.returncode == 1
    report = tmp_path / "report.json"
    four = _run(site, *args, "-o", str(tmp_path / "four"), "--batch-size", "4", "--report", str(report),
                log=tmp_path / "four.log")
    assert four.returncode == 1
    rows = {Path(row["input"]).name: row for row in _report(report)["files"]}
    assert {name for name, row in rows.items() if row["status"] != "ok"} == {"a01.png", "a06.png"}
    assert "image too dark for bb-noise" in rows["a01.png"]["error"]
    assert _sizes(tmp_path / "four.log")[0] == 4  # the batch was tried (and failed) before one by one
    assert tree_bytes(tmp_path / "four") == tree_bytes(tmp_path / "one")


def test_jobs_send_groups_to_workers_with_the_same_bytes(site: Path, mixed: Path, tmp_path: Path) -> None:
    args = [str(mixed), "--filter", "bb-noise", "--seed", "3", "-q"]
    one = _run(site, *args, "-o", str(tmp_path / "one"), "--batch-size", "1")
    assert one.returncode == 0, one.stderr
    jobs = _run(site, *args, "-o", str(tmp_path / "jobs"), "--batch-size", "3", "--jobs", "2",
                log=tmp_path / "jobs.log")
    assert jobs.returncode == 0, jobs.stderr
    assert tree_bytes(tmp_path / "jobs") == tree_bytes(tmp_path / "one")
    entries = [json.loads(line) for line in (tmp_path / "jobs.log").read_text().splitlines()]
    assert max(e["size"] for e in entries) == 3 and os.getpid() not in {e["pid"] for e in entries}


def test_a_worker_killed_by_one_file_of_a_batch_fails_only_that_file(site: Path, tmp_path: Path) -> None:
    for i in range(5):
        write_photo(tmp_path / "in" / f"f{i}.png", size=(16, 16), seed=i)
    Image.new("RGB", (16, 16), (255, 255, 255)).save(tmp_path / "in" / "f2.png")
    report = tmp_path / "report.json"
    result = _run(site, str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--filter", "bb-die", "--jobs", "2",
                  "--batch-size", "4", "--report", str(report), "-q")
    assert result.returncode == 1, result.stderr
    rows = {Path(row["input"]).name: row for row in _report(report)["files"]}
    assert [name for name, row in rows.items() if row["status"] != "ok"] == ["f2.png"]
    assert "died twice" in rows["f2.png"]["error"]


def _done_lines(out: Path) -> int:
    try:
        return (out / JOURNAL_NAME).read_text(errors="replace").count('"state": "done"')
    except FileNotFoundError:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_9_in_a_batch_then_resume_with_other_batches_is_byte_identical(site: Path, tmp_path: Path, jobs: str) -> None:
    corpus = tmp_path / "corpus"
    for i in range(12):
        write_photo(corpus / f"img{i:02d}.png", size=(48, 32), seed=i)
    args = [str(corpus), "--filter", "bb-noise", "--delay", "0.08", "--seed", "5", "-q", "--jobs", jobs]
    reference = _run(site, *args, "-o", str(tmp_path / "reference"), "--batch-size", "1")
    assert reference.returncode == 0, reference.stderr
    expected = tree_bytes(tmp_path / "reference")
    out = tmp_path / "out"
    kills = 0
    for target, size in ((2, "4"), (6, "3")):  # killed with one batch size, resumed with another
        process = subprocess.Popen([*batch_command(), *args, "-o", str(out), "--batch-size", size],
                                   env=plugin_env(site), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + 120
        while _done_lines(out) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        written = tree_bytes(out)
        assert 0 < len(written) < len(expected)
        assert all(data == expected[name] for name, data in written.items())
    assert kills == 2
    resumed = _run(site, *args, "-o", str(out), "--batch-size", "5")
    assert resumed.returncode == 0, resumed.stderr
    assert tree_bytes(out) == expected


# --------------------------------------------------------------------------- deepdream, for real
DREAM = ["--filter", "deepdream", "--octaves", "2", "--steps", "2", "--seed", "9", "-q"]


def _dream_env() -> dict[str, str]:
    return {**os.environ, "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _dream(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*batch_command(), *args], capture_output=True, text=True, env=_dream_env(), timeout=900)


def _photos(folder: Path) -> Path:
    """Seven 64 x 48 crops of real photos (one with alpha) and one 60 x 48."""
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    folder.mkdir(parents=True)
    for i in range(8):
        photo = Image.fromarray(sources[i % 4]).resize((64 + 8 * i, 48 + 6 * i)).crop((i, i, 64 + i, 48 + i))
        if i == 5:
            photo = photo.convert("RGBA")
            photo.putalpha(Image.linear_gradient("L").resize((64, 48)))
        if i == 6:
            photo = photo.resize((60, 48))
        photo.save(folder / f"p{i}.png")
    return folder


@pytest.mark.slow
def test_deepdream_batches_write_the_bytes_of_one_by_one_and_resume_identically(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    one = _dream(str(photos), "-o", str(tmp_path / "one"), *DREAM, "--batch-size", "1", "--mask-alpha")
    assert one.returncode == 0, one.stderr
    expected = tree_bytes(tmp_path / "one")
    assert len(expected) == 8
    four = _dream(str(photos), "-o", str(tmp_path / "four"), *DREAM, "--batch-size", "4", "--mask-alpha")
    assert four.returncode == 0, four.stderr
    assert tree_bytes(tmp_path / "four") == expected
    # A partly done folder (other batches: p1+p2 first, then p0+p3+p4, p5, p6, p7) gives the same bytes.
    part = _dream(str(photos), "-o", str(tmp_path / "part"), *DREAM, "--batch-size", "4", "--mask-alpha",
                  "--include", "p[12].png")
    assert part.returncode == 0, part.stderr
    rest = _dream(str(photos), "-o", str(tmp_path / "part"), *DREAM, "--batch-size", "4", "--mask-alpha")
    assert rest.returncode == 0 and "2 skipped" in rest.stderr, rest.stderr
    assert tree_bytes(tmp_path / "part") == expected


# --------------------------------------------------------------------------- the batched engine, in process
@pytest.fixture(scope="module")
def models() -> ModelCache:
    return ModelCache()


@pytest.fixture(scope="module")
def crops(chelsea: np.ndarray, coffee: np.ndarray) -> list[np.ndarray]:
    """Four different 48 x 64 photos."""
    from skimage import data

    photos = [chelsea, coffee, data.astronaut().astype(np.float32) / 255, data.rocket().astype(np.float32) / 255]
    return [np.asarray(Image.fromarray((p * 255).astype(np.uint8)).resize((64, 48)), np.float32) / 255 for p in photos]


def _alphas(count: int, shape: tuple[int, int]) -> list[np.ndarray]:
    ramp = np.linspace(-0.5, 1.5, shape[1], dtype=np.float32)[None, :].repeat(shape[0], 0)
    return [np.clip(np.roll(ramp, 9 * i, axis=1), 0.0, 1.0) for i in range(count)]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"mask_alpha": True},
        {"loss_ceiling": 2.5, "steps": 3},  # stops some images early, at different steps
        {"detail": False, "upscale_octaves": 1, "smoothing": "laplacian", "normalize": "mean-abs", "memory_mb": 64},
    ],
    ids=["defaults", "alpha-masks", "loss-ceiling", "no-detail-upscaled-small-budget"],
)
def test_run_batch_gives_each_image_its_single_result(values: dict, crops: list, models: ModelCache) -> None:
    from neurofilters.filters.deepdream import batched, engine
    from neurofilters.filters.deepdream.plugin import PARAMS

    params = validate_params(PARAMS, {"octaves": 2, "steps": 2, **values})
    alphas = _alphas(len(crops), crops[0].shape[:2])
    alone = [engine.run(image, params, FilterContext(seed=i, models=models, alpha=alphas[i])) for i, image in enumerate(crops)]
    contexts = [FilterContext(seed=i, models=models, alpha=alphas[i]) for i in range(len(crops))]
    together = batched.run_batch(crops, params, contexts)
    assert len(together) == len(crops)
    for single, batch in zip(alone, together):
        assert batch.dtype == np.float32 and np.array_equal(single, batch)
    assert not np.array_equal(together[0], together[1])
    settings = engine.settings_from_params(resolve_presets(deepdream_spec(), params))
    objective = engine.build_objective(models.get("lite0"), settings)
    probed = {key for key in objective.batch_exact if key[1:] == (48, 64)}
    assert probed and max(count for count, _, _ in probed) >= 2  # the batched path was considered (and checked)


def test_batches_that_are_not_bit_exact_run_image_by_image(crops: list, models: ModelCache) -> None:
    """A network call whose result depends on the batch size (as kernels may) is detected and avoided."""
    from neurofilters.filters.deepdream import batched, engine

    settings = engine.settings_from_params(resolve_presets(deepdream_spec(), validate_params(engine.PARAMS, {})))
    exact = engine.build_objective(models.get("lite0"), settings)

    def batch_dependent(batch: np.ndarray, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        losses, gradients = exact.gradient(batch, shift)
        if len(batch) > 1:  # another summation order: the last bits change
            gradients = (gradients.astype(np.float64) * (1 + 2**-20)).astype(np.float32)
        return losses, gradients

    variant = replace(exact, gradient=batch_dependent, batch_exact={})
    shifts = [(3, 5), (0, 0), (47, 63)]
    single = [batched._alone(exact, image, shift) for image, shift in zip(crops, shifts)]
    for objective, expect_exact in ((variant, False), (replace(exact, batch_exact={}), None)):
        results = batched.batch_gradients(objective, crops[:3], shifts)
        for (loss, gradient), (single_loss, single_gradient) in zip(results, single):
            assert loss == single_loss and np.array_equal(gradient, single_gradient)
        if expect_exact is not None:
            assert objective.batch_exact == {(3, 48, 64): expect_exact}


def _numpy_objective(exact: object) -> object:
    """The objective with a per-sample numpy gradient (batch-invariant by construction, position-dependent)."""
    from neurofilters.filters.deepdream import engine

    def gradient(batch: np.ndarray, shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
        rolled = np.roll(np.asarray(batch, np.float32), shift, axis=(1, 2))  # as the graph does
        height, width = rolled.shape[1:3]
        weights = np.linspace(0.5, 2.0, height * width * 3, dtype=np.float32).reshape(height, width, 3)
        losses = np.array([float((sample * sample * weights).mean()) for sample in rolled])
        return losses, np.roll(2 * rolled * weights, (-shift[0], -shift[1]), axis=(1, 2))

    assert isinstance(exact, engine._Objective)
    return replace(exact, gradient=gradient, batch_exact={})


def test_batched_octaves_match_single_octaves_on_a_batch_invariant_gradient(crops: list, models: ModelCache) -> None:
    """Whatever this machine's kernels do, the batched stepping itself (rolls, rngs, masks, stops) is exact."""
    from neurofilters.filters.deepdream import batched, engine

    values = {"octaves": 3, "steps": 4, "mask_feather": 0.0, "loss_ceiling": 0.3}  # stops vary by image
    settings = engine.settings_from_params(resolve_presets(deepdream_spec(), validate_params(engine.PARAMS, values)))
    objective = _numpy_objective(engine.build_objective(models.get("lite0"), settings))
    masks = [None, *_alphas(3, crops[0].shape[:2])]

    def alone(image: np.ndarray, mask: np.ndarray | None, seed: int) -> np.ndarray:
        state, rng = engine.DreamState(image, mask, settings, 32), np.random.default_rng(seed)
        for shape in state.shapes:
            current = state.begin_octave(shape)
            engine._dream_octave(current, objective, settings, state.octave_mask, rng, lambda step, loss: None)
            state.end_octave()
        return state.finish()

    expected = [alone(image, mask, seed) for seed, (image, mask) in enumerate(zip(crops, masks))]
    rngs = [np.random.default_rng(seed) for seed in range(len(crops))]
    together = batched._dream_together(crops, objective, settings, rngs, masks, 32, None)
    assert objective.batch_exact and all(objective.batch_exact.values())  # batched calls were used
    for single, batch in zip(expected, together):
        assert np.array_equal(single, batch)


def test_batch_capacity_follows_memory_tiling_and_objective(models: ModelCache) -> None:
    from neurofilters.filters.deepdream import batched, engine

    def capacity(values: dict, shapes: list[tuple[int, int]]) -> int:
        settings = engine.settings_from_params(resolve_presets(deepdream_spec(), validate_params(engine.PARAMS, values)))
        objective = engine.build_objective(models.get("lite0"), settings)
        return batched.batch_capacity(objective, settings, shapes)

    small = [(34, 46), (48, 64)]
    assert capacity({}, small) > 8
    roomy, tight = capacity({"memory_mb": 1024}, small), capacity({"memory_mb": 64}, small)
    assert roomy > tight >= 1
    assert capacity({"memory_mb": 64}, [(600, 800)]) == 1  # that octave is tiled
    assert capacity({"tile_size": 128}, [(100, 200)]) == 1  # wider than the tile: tiled
    assert capacity({"objective": "neuron"}, small) == 1


def test_dream_batch_checks_its_inputs(crops: list, models: ModelCache) -> None:
    from neurofilters.filters.deepdream import batched, engine

    settings = engine.settings_from_params(resolve_presets(deepdream_spec(), validate_params(engine.PARAMS, {})))
    rngs = [np.random.default_rng(i) for i in range(2)]
    with pytest.raises(ValueError, match=r"images of one size\. Received sizes \[\(40, 64\), \(48, 64\)\]"):
        batched.dream_batch([crops[0], crops[1][:40]], models.get("lite0"), settings, rngs=rngs)
    with pytest.raises(ValueError, match="Received: 2 images, 1 rngs, 2 masks"):
        batched.dream_batch(crops[:2], models.get("lite0"), settings, rngs=rngs[:1])


def test_only_pipelines_with_a_batch_run_step_are_grouped() -> None:
    spec = _spec(params=(Param("k", "int", 1, "k"),))
    assert spec.batch_run is None  # the batch runner groups nothing for it (see can_batch)
    from neurofilters.plugin_host.batch.group import can_batch

    assert not can_batch([(spec, {"k": 1})]) and can_batch([(spec, {}), (_spec(batch_run=print), {})])
