"""Network explorer benchmark: atlas scaling, similar-image cache, patches against a plain forward pass.

Three measurements on Lite0, in one run (so machine load hits peers alike):

* **atlas**: ``write_atlas`` for 3 layers x C channels (C from ``--channels``,
  e.g. 4,8,16), each in a fresh folder: wall time and seconds per channel;
* **similar**: descriptors of a folder of N photos with an empty cache (first
  query) against the same query again (cached);
* **patches**: ``top_patches`` (load, resize, batch, forward, top positions)
  over the N photos against the peers "load + resize + the same forward
  passes" and "the same forward passes on preloaded arrays"; the goal is a
  ratio within 1.2 of the first peer.

The photos are crops of scikit-image's photos, resized to ``--photo-size``.

Usage::

    python bench/bench_explorer.py [--images 500] [--photo-size 160] [--size 128] [--channels 4,8,16] [--steps 32]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _photos(folder: Path, count: int, side: int) -> list[Path]:
    from PIL import Image
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(), data.hubble_deep_field()]
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        height, width = source.shape[:2]
        ch, cw = int(height * rng.uniform(0.4, 0.9)), int(width * rng.uniform(0.4, 0.9))
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        crop = Image.fromarray(source[top : top + ch, left : left + cw, :3]).resize((side, side * 3 // 4))
        path = folder / f"photo-{index:04d}.png"
        crop.save(path)
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--photo-size", type=int, default=160)
    parser.add_argument("--size", type=int, default=128, help="working size of patches/similar")
    parser.add_argument("--channels", default="4,8,16")
    parser.add_argument("--steps", type=int, default=32, help="atlas: steps per channel visualisation")
    parser.add_argument("--vis-size", type=int, default=64, help="atlas: visualisation side")
    parser.add_argument("--skip-atlas", action="store_true")
    parser.add_argument("--atlas-only", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from neurofilters.filters.explorer.atlas import write_atlas
    from neurofilters.filters.explorer.features import activations
    from neurofilters.filters.explorer.patches import load_work_image, top_patches
    from neurofilters.filters.explorer.similar import FeatureCache, folder_descriptors
    from neurofilters.plugin_host import ModelCache, get_registry

    model = ModelCache(get_registry().get_model).get("lite0")
    figures: dict[str, object] = {"cpu": os.popen("lscpu | grep 'Model name'").read().strip(), "images": args.images,
                                  "photo_size": args.photo_size, "size": args.size}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "photos").mkdir()
        paths = _photos(root / "photos", args.images, args.photo_size)
        layer = "block5_expand_act"
        activations(model, [layer], np.zeros((1, 96, 128, 3), np.float32))  # warm-up

        # patches vs the plain forward pass, interleaved twice; the best of each
        patch_times, load_forward_times, forward_times = [], [], []
        for _ in range(0 if args.atlas_only else 2):
            start = time.perf_counter()
            top_patches(model, layer, 10, paths, k=16, size=args.size, batch_size=16)
            patch_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            images = np.stack([load_work_image(path, args.size) for path in paths])
            activations(model, [layer], images, batch_size=16)
            load_forward_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            activations(model, [layer], images, batch_size=16)
            forward_times.append(time.perf_counter() - start)
        if args.atlas_only:
            patch_times = load_forward_times = forward_times = [float("nan")]
        patches_s, load_forward_s, forward_s = min(patch_times), min(load_forward_times), min(forward_times)
        figures["patches"] = {
            "patches_images_per_s": args.images / patches_s,
            "load_forward_images_per_s": args.images / load_forward_s,
            "forward_only_images_per_s": args.images / forward_s,
            "ratio_vs_load_forward": patches_s / load_forward_s,
            "ratio_vs_forward_only": patches_s / forward_s,
        }
        print(f"patches: {args.images / patches_s:.1f} img/s; load+forward {args.images / load_forward_s:.1f} img/s "
              f"(ratio {patches_s / load_forward_s:.2f}); forward only {args.images / forward_s:.1f} img/s "
              f"(ratio {patches_s / forward_s:.2f})", flush=True)

        # similar: first query (empty cache) vs the second (cached)
        similar = {}
        for query_layer in () if args.atlas_only else ("block2_expand_act", "block12_expand_act"):
            cache_path = root / f"cache-{query_layer}.npz"
            start = time.perf_counter()
            folder_descriptors(model, query_layer, paths, size=args.size, cache=FeatureCache(cache_path))
            first = time.perf_counter() - start
            start = time.perf_counter()
            folder_descriptors(model, query_layer, paths, size=args.size, cache=FeatureCache(cache_path))
            second = time.perf_counter() - start
            similar[query_layer] = {"first_s": first, "cached_s": second, "speed_up": first / second}
            print(f"similar {query_layer}: first {first:.2f} s, cached {second:.3f} s ({first / second:.0f}x)", flush=True)
        figures["similar"] = similar

        if not args.skip_atlas:
            atlas = {}
            for count in [int(c) for c in args.channels.split(",")]:
                start = time.perf_counter()
                write_atlas(model, root / f"atlas-{count}", layers=["block2_expand_act", "block6_expand_act", "block12_expand_act"],
                            channels=count, steps=args.steps, size=args.vis_size, seed=0)
                wall = time.perf_counter() - start
                atlas[count] = {"wall_s": wall, "s_per_channel": wall / (3 * count)}
                print(f"atlas 3 layers x {count} channels ({args.steps} steps, {args.vis_size} px): {wall:.1f} s, "
                      f"{wall / (3 * count):.2f} s per channel", flush=True)
            figures["atlas"] = atlas
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
