"""Benchmark and quality measurement of class hallucination, adversarial images and universal noise.

Parts (choose with ``--parts``):

* ``quality``: 10 classes spread over ImageNet, generated on Lite0 from noise with
  the ``robust`` recipe and with the Lucid-style baseline (``lucid`` recipe:
  Lucid's standard transforms, one view per step, 128 px); for each, p on Lite0,
  mean saturation and block contrast, and the target's rank and p on Lite1
  (never used for generating): the transfer test. Each image is scored twice: by
  ``classify`` (central 87.5 % crop, bicubic) and whole (``*_full``: bilinear with corners
  aligned to the input size, as lucent shows it; ``full_view`` in the summary). ``--variants lucid:224`` adds the Lucid
  recipe at the robust recipe's size.
* ``lucent``: the real lucent (torch port of Lucid) as the transfer peer: its standard
  recipe (``param.image(128)``, ``standard_transforms``, 128 steps) on a torch Lite0 loading the
  zoo's checkpoint, scored like ``quality`` (``quality`` -> ``"lucent-real"``); see
  ``bench/bench_lucent.py`` for its bench-only installs and stand-ins.
* ``speed``: wall time to reach p >= 0.9 on Lite0 for one class, ours (robust
  recipe, checked every 8 steps) vs tf-keras-vis 0.8.7 ``ActivationMaximization``
  (its defaults: jitter 4, rotate 1, TV 1.0, L1 0.3 regularisers... on Lite0's
  logits model, checked every 8 steps), same machine, same run.
* ``adversarial``: 10 photos (scikit-image), targeted at 10 classes, at
  epsilon 2, 4 and 8 /255: success (top-1 = target through ``classify``) and PSNR.
* ``noise``: universal noise (``fit-noise`` with its defaults) for flamingo and jigsaw
  puzzle (three splits each) over 42 distinct photos (Debian's wallpaper photos, fetched with
  ``apt-get download``, and scikit-image's), targeted fooling rate at 10/255 on the 30 % of
  the photos the command holds out (never seen while fitting), the largest |r| reported.

Results are printed and written to ``bench/results_hallucinate.json``.
Run: ``PYTHONPATH=... python bench/bench_hallucinate.py --parts quality,lucent,speed``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import machine  # noqa: E402
from neurofilters.filters.hallucinate.quality import local_contrast, saturation  # noqa: E402

CLASSES = (1, 130, 207, 291, 323, 417, 817, 949, 980, 985)


def _rank(model, image: np.ndarray, target: int) -> tuple[int, float]:
    ranking = model.classify(image, top=1000)
    ids = [entry[0] for entry in ranking]
    return ids.index(target) + 1, ranking[ids.index(target)][2]


def score(lite0, lite1, image: np.ndarray, target: int, seconds: float) -> dict:
    """One transfer-table row: p on Lite0, rank and p on Lite1 (through ``classify`` and whole), colour, contrast."""
    from bench_lucent import full_view_rank

    _, p0 = _rank(lite0, image, target)
    rank1, p1 = _rank(lite1, image, target)
    _, full0 = full_view_rank(lite0, image, target)
    full_rank1, full1 = full_view_rank(lite1, image, target)
    return {"class": target, "label": lite0.labels[target], "p_lite0": p0, "rank_lite1": rank1, "p_lite1": p1,
            "saturation": saturation(image), "contrast": local_contrast(image), "seconds": seconds,
            "p_lite0_full": full0, "rank_lite1_full": full_rank1, "p_lite1_full": full1}


def summary(rows: list[dict]) -> dict:
    """The transfer figures of one recipe's rows: as ``classify`` sees the images, and whole (``full_view``)."""
    out = {
        "rows": rows,
        "p_lite0_ge_0.9": sum(r["p_lite0"] >= 0.9 for r in rows),
        "lite1_top5": sum(r["rank_lite1"] <= 5 for r in rows),
        "median_rank_lite1": statistics.median(r["rank_lite1"] for r in rows),
        "median_p_lite1": statistics.median(r["p_lite1"] for r in rows),
    }
    if all("p_lite0_full" in r for r in rows):
        out["full_view"] = {
            "p_lite0_ge_0.9": sum(r["p_lite0_full"] >= 0.9 for r in rows),
            "lite1_top5": sum(r["rank_lite1_full"] <= 5 for r in rows),
            "median_rank_lite1": statistics.median(r["rank_lite1_full"] for r in rows),
            "median_p_lite1": statistics.median(r["p_lite1_full"] for r in rows),
        }
    return out


def quality(steps: int, classes: tuple[int, ...], variants: tuple[tuple[str, int], ...] = (("robust", 224), ("lucid", 128))) -> dict:
    from neurofilters.filters.visualization.objectives import class_objective
    from neurofilters.filters.visualization.visualize import RECIPES, visualize
    from neurofilters.filters.zoo.lite0 import load_lite0, load_lite1

    lite0, lite1 = load_lite0(), load_lite1()
    out: dict = {}
    for recipe, size in variants:
        rows = []
        for target in classes:
            began = time.perf_counter()
            image = visualize(lite0, class_objective(lite0, target), height=size, width=size, steps=steps,
                              recipe=RECIPES[recipe], rng=np.random.default_rng(0))
            seconds = time.perf_counter() - began
            row = score(lite0, lite1, image, target, seconds)
            print(recipe, row, flush=True)
            rows.append(row)
        key = recipe if (recipe, size) in (("robust", 224), ("lucid", 128)) else f"{recipe}-{size}"
        out[key] = summary(rows)
        print(key, {k: v for k, v in out[key].items() if k != "rows"}, flush=True)
    return out


def speed(target: int = 130, max_steps: int = 512) -> dict:
    import keras

    from neurofilters.filters.visualization.objectives import class_objective
    from neurofilters.filters.visualization.visualize import RECIPES, visualize
    from neurofilters.filters.zoo.lite0 import load_lite0

    lite0 = load_lite0()
    reached = {}

    def until(step: int, image: np.ndarray) -> bool:
        p = _rank(lite0, image, target)[1]
        if p >= 0.9:
            reached["ours_steps"] = step
        return p >= 0.9

    began = time.perf_counter()
    visualize(lite0, class_objective(lite0, target), height=224, width=224, steps=max_steps, recipe=RECIPES["robust"],
              rng=np.random.default_rng(0), until=until)
    ours = time.perf_counter() - began

    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.callbacks import Callback
    from tf_keras_vis.utils.scores import CategoricalScore

    logits = lite0.logits_model()

    class Stop(Callback):
        def __init__(self) -> None:
            self.step = 0
            self.done = False

        def __call__(self, i, values, grads, scores, model_outputs, **kwargs) -> None:
            self.step = i + 1
            if self.step % 8 == 0 and not self.done:
                image = np.clip(np.asarray(values[0])[0], 0.0, 1.0)
                if _rank(lite0, image, target)[1] >= 0.9:
                    self.done = True
                    raise StopIteration

    visualizer = ActivationMaximization(keras.Model(logits.inputs, logits.outputs), clone=False)
    stop = Stop()
    began = time.perf_counter()
    try:
        visualizer(CategoricalScore([target]), steps=max_steps, callbacks=[stop],
                   seed_input=np.random.default_rng(0).uniform(0.4, 0.6, (1, 224, 224, 3)).astype(np.float32),
                   input_range=(0.0, 1.0))
    except StopIteration:
        pass
    theirs = time.perf_counter() - began
    result = {"ours_seconds": ours, "ours_steps": reached.get("ours_steps"), "tf_keras_vis_seconds": theirs,
              "tf_keras_vis_steps": stop.step, "tf_keras_vis_reached": stop.done, "ratio": ours / theirs}
    print("speed", result, flush=True)
    return result


def _photos() -> list[np.ndarray]:
    from skimage import data

    # The ten distinct photos scikit-image ships without a download (coins is grey: repeated to RGB).
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
             "colorwheel", "logo", "coins")
    photos = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        photos.append(image[:, :, :3].astype(np.float32) / 255.0)
    return photos


def adversarial() -> dict:
    from neurofilters.filters.hallucinate.adversarial import attack, psnr
    from neurofilters.filters.zoo.lite0 import load_lite0

    lite0 = load_lite0()
    photos = _photos()
    out = {}
    for eps in (2, 4, 8):
        hits, psnrs = 0, []
        for index, photo in enumerate(photos):
            target = CLASSES[index % len(CLASSES)]
            result = attack(photo, lite0, target, eps / 255.0, 40)
            hits += lite0.classify(np.round(result * 255) / 255, top=1)[0][0] == target
            psnrs.append(psnr(photo, result))
        out[f"eps{eps}"] = {"success": hits, "photos": len(photos), "min_psnr": min(psnrs), "median_psnr": statistics.median(psnrs)}
        print("adversarial", eps, out[f"eps{eps}"], flush=True)
    return out


#: Photos for the universal noise: Debian's wallpaper packages (fetched with apt, the Debian registry's
#: own client) hold real photographs under free licences; these are the ones that are photos (not
#: drawings or gradients), picked by eye once. With scikit-image's six colour/grey photos: 42.
DEBIAN_PHOTO_PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds", "plasma-workspace-wallpapers")
DEBIAN_PHOTOS = (
    *(f"usr/share/backgrounds/{name}.jpg" for name in (
        "Bridge_by_Sander_Klootwijk", "Dragonfly_by_Bolly", "Infinite-Sea_by_Aury88", "Kleiber_by_Lukas_Baubkus",
        "Picture_0B_by_freespace", "Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "aitzgorri_by_Aitzol_Berasategi",
        "free_by_Peter_Nerlich", "friends_by_Aitzol_Berasategi", "life_by_Aitzol_Berasategi",
        "picosdeeuropa_by_Aitzol_Berasategi", "seeding_by_Clements_Engelhardt", "sunset_by_Aitzol_Berasategi")),
    *(f"usr/share/backgrounds/mate/nature/{name}.jpg" for name in (
        "Aqua", "Blinds", "Dune", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")),
    *(f"usr/share/wallpapers/{name}/contents/images/1280x1024.jpg" for name in (
        "BytheWater", "ColdRipple", "EveningGlow", "FallenLeaf", "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")),
    "usr/share/wallpapers/MilkyWay/contents/images/1080x1920.png",
    "usr/share/wallpapers/Volna/contents/images/5120x2880.jpg",
)


def photo_folder(folder: Path, cache: Path = Path("/var/tmp/neurofilters-bench-photos")) -> Path:
    """Write the 42 photos (longer side 640 px) as PNGs: Debian's wallpaper photos and scikit-image's."""
    import subprocess

    from PIL import Image
    from skimage import data, io

    unpacked = cache / "unpacked"
    if not all((unpacked / name).is_file() for name in DEBIAN_PHOTOS):
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *DEBIAN_PHOTO_PACKAGES], cwd=cache, check=True, capture_output=True)
        for package in sorted(cache.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(package), str(unpacked)], check=True)
    folder.mkdir(parents=True, exist_ok=True)
    for name in DEBIAN_PHOTOS:
        image = Image.open(unpacked / name).convert("RGB")
        image.thumbnail((640, 640), Image.Resampling.LANCZOS)
        stem = name.split("/")[3] if "/wallpapers/" in name else Path(name).stem
        image.save(folder / f"debian-{stem}.png")
    shipped = {name: getattr(data, name)() for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")}
    shipped["motorcycle"] = io.imread(Path(data.__file__).parent / "motorcycle_left.png")
    for name, pixels in shipped.items():
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[:, :, None], 3, axis=2)
        Image.fromarray(pixels[:, :, :3]).save(folder / f"skimage-{name}.png")
    return folder


NOISE_RUNS = ((130, 0), (130, 1), (130, 2), (611, 0), (611, 1), (611, 2))


def pool_noise_runs(runs: list[dict]) -> dict:
    """Per class, the held-out hits pooled over its splits; the largest |r| of all runs."""
    out: dict = {"runs": runs}
    for target in sorted({row["class"] for row in runs}):
        rows = [row for row in runs if row["class"] == target]
        hits = sum(round(row["fooling_held_out"] * row["held_out_photos"]) for row in rows)
        total = sum(row["held_out_photos"] for row in rows)
        out[f"class_{target}_pooled_held_out"] = {"hits": hits, "evaluations": total, "rate": hits / total, "splits": len(rows)}
    out["max_abs_255"] = max(row["max_abs_255"] for row in runs)
    return out


def universal_noise(runs: tuple[tuple[int, int], ...] = NOISE_RUNS, epsilon: float = 10.0) -> dict:
    """``fit-noise`` with its defaults on the 42 photos for each (class, seed): the seed picks the held-out 30 %.

    13 held-out photos make one rate coarse (a photo is 7.7 points), so each class is fitted
    on three splits and the rates pooled over the 39 held-out evaluations.
    """
    import tempfile

    import neurofilters
    from neurofilters.filters.hallucinate import fit_noise
    from neurofilters.filters.hallucinate.plugin import FIT_NOISE_PARAMS

    done: list[dict] = []
    with tempfile.TemporaryDirectory() as temporary:
        folder = photo_folder(Path(temporary) / "photos")
        defaults = {param.name: param.default for param in FIT_NOISE_PARAMS}  # the command's declared defaults
        for target, seed in runs:
            output = Path(temporary) / f"noise-{target}-{seed}.npz"
            began = time.perf_counter()
            neurofilters.fit_noise(folder, class_=str(target), output=output, epsilon=epsilon, seed=seed)
            seconds = time.perf_counter() - began
            held = len(fit_noise.split(sorted(folder.glob("*.png")), defaults["held_out"], seed)[1])
            with np.load(output) as saved:
                result = {"class": target, "seed": seed, "epsilon": epsilon, "epochs": defaults["epochs"],
                          "batch_size": defaults["batch_size"],
                          "max_abs_255": float(np.abs(saved["noise"]).max() * 255),
                          "fooling_train": float(saved["fooling_train"]), "fooling_held_out": float(saved["fooling_held_out"]),
                          "held_out_photos": held, "photos": len(list(folder.glob("*.png"))), "seconds": seconds}
            print("noise", result, flush=True)
            done.append(result)
    out = pool_noise_runs(done)
    print("noise", {key: value for key, value in out.items() if key != "runs"}, flush=True)
    return out


def store(results: dict, replace: tuple[str, ...] = ("noise",)) -> None:
    """Merge ``results`` into ``bench/results_hallucinate.json`` (one level deep: parts keep their other
    keys, except the parts in ``replace``, whose results are whole in one run)."""
    path = Path(__file__).with_name("results_hallucinate.json")
    previous = json.loads(path.read_text()) if path.exists() else {}
    for name, value in results.items():
        if isinstance(value, dict) and isinstance(previous.get(name), dict) and name not in replace:
            previous[name].update(value)
        else:
            previous[name] = value
    path.write_text(json.dumps(previous, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="quality,speed,adversarial")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--variants", default="robust:224,lucid:128", help="recipe:size pairs of the quality part")
    args = parser.parse_args()
    results: dict = {"cpu": machine.cpu()}
    parts = args.parts.split(",")
    if "quality" in parts:
        variants = tuple((name, int(size)) for name, size in (item.split(":") for item in args.variants.split(",")))
        results.setdefault("quality", {}).update(quality(args.steps, CLASSES, variants))
    if "lucent" in parts:
        import bench_lucent

        results.setdefault("quality", {})["lucent-real"] = bench_lucent.quality(CLASSES, args.steps)
    if "speed" in parts:
        results["speed"] = speed()
    if "adversarial" in parts:
        results["adversarial"] = adversarial()
    if "noise" in parts:
        results["noise"] = universal_noise()
    store(results)


if __name__ == "__main__":
    main()
