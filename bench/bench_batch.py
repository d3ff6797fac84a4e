"""Batch throughput: 100 photos of 512 x 512 through a fast filter.

Reports the batch's wall time against the sum of the pure filter compute
measured in the same run (each file's filter call, timed by the runner and
written to the JSON report), i.e. how much decoding, encoding, journaling and
orchestration add on top of the filter itself. Prefetching overlaps decode and
encode with compute, so the overhead should stay small.

Usage::

    python bench/bench_batch.py [--files 100] [--size 512] [--jobs 1] [--filter bench-blur] [--repeat 3]
    python bench/bench_batch.py --files 48 --size 128 --filter deepdream --filter-args "--octaves 2 --steps 5" \
        --batch-sizes 1,4,8

The default filter, ``bench-blur`` (a numpy box blur, ~40 ms per 512 x 512
image on one core), is installed for the run as a real plugin distribution;
``--filter deepdream --preview`` uses the built-in filter with its preview
parameters instead, ``--filter-args`` passes any filter flags.

``--batch-sizes 1,4,8`` measures ``--batch-size`` instead: the same batch is
run at each size (the sizes interleaved in every repeat, so drift in the
machine's load hits them alike) and each median wall time is printed as a
ratio to the wall time at batch size 1 of the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

BENCH_PLUGIN = '''
from neurofilters.plugin_host import FilterSpec, Param, hookimpl


def blur(image, params, context):
    import numpy as np

    radius = params["radius"]
    out = image
    for axis in (0, 1):
        padded = np.pad(out, [(radius + 1, radius) if a == axis else (0, 0) for a in range(3)], mode="edge")
        summed = np.cumsum(padded, axis=axis, dtype=np.float32)
        upper = np.take(summed, np.arange(2 * radius + 1, summed.shape[axis]), axis=axis)
        lower = np.take(summed, np.arange(0, summed.shape[axis] - 2 * radius - 1), axis=axis)
        out = (upper - lower) / (2 * radius + 1)
    for _ in range(params["passes"] - 1):
        out = np.sqrt(out * image + 1e-6)
    return out


@hookimpl
def register_filters():
    return [FilterSpec(name="bench-blur", title="Bench blur", summary="Box blur.", description="Benchmark filter.",
                       category="Bench", run=blur,
                       params=(Param("radius", "int", 6, "Blur radius.", minimum=1),
                               Param("passes", "int", 4, "Extra work.", minimum=1)))]
'''


def make_photos(folder: Path, count: int, size: int) -> None:
    """``count`` JPEG photos of ``size`` x ``size``, crops of scikit-image's photos."""
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = sources[index % len(sources)]
        image = Image.fromarray(photo).resize((size + 64, size + 64))
        x, y = rng.integers(0, 64, size=2)
        image.crop((int(x), int(y), int(x) + size, int(y) + size)).save(folder / f"photo{index:03d}.jpg", quality=92)


def install_plugin(folder: Path) -> Path:
    """The bench filter as an installed distribution under ``folder``."""
    info = folder / "neurofilters_bench-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: neurofilters-bench\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[neurofilters]\nnf_bench_plugin = nf_bench_plugin\n")
    (folder / "nf_bench_plugin.py").write_text(textwrap.dedent(BENCH_PLUGIN))
    return folder


def run_once(
    photos: Path, out: Path, args: argparse.Namespace, env: dict[str, str], batch_size: int | None = None
) -> dict[str, float]:
    """One batch run; returns wall, compute and overhead."""
    report = out.with_suffix(".json")
    command = [sys.executable, "-m", "neurofilters.plugin_host", "batch", str(photos), "-o", str(out), "--filter", args.filter,
               "--jobs", str(args.jobs), "--report", str(report), "-q", "--overwrite", *args.params]
    if batch_size is not None:
        command += ["--batch-size", str(batch_size)]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    process_wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"batch failed ({result.returncode}):\n{result.stderr}")
    data = json.loads(report.read_text())
    wall, compute = data["wall_seconds"], data["compute_seconds"]
    return {"wall": wall, "compute": compute, "process_wall": process_wall,
            "overhead": wall / (compute / args.jobs) - 1.0}


def main() -> None:
    """Run the benchmark and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--filter", default="bench-blur")
    parser.add_argument("--preview", action="store_true", help="pass the filter's preview_params")
    parser.add_argument("--filter-args", default="", help='more filter flags, e.g. "--octaves 2 --steps 5"')
    parser.add_argument("--batch-sizes", default="", help="compare these --batch-size values, e.g. 1,4,8")
    args = parser.parse_args()
    sizes = [int(size) for size in args.batch_sizes.split(",") if size.strip()]
    if sizes and 1 not in sizes:
        sizes.insert(0, 1)  # the reference
    with tempfile.TemporaryDirectory(prefix="nf-bench-") as temp:
        work = Path(temp)
        make_photos(work / "photos", args.files, args.size)
        site = install_plugin(work / "site")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "NEUROFILTERS_DISABLE_PLUGIN_AUTOLOAD": ""}
        args.params = []
        if args.preview:
            from neurofilters.plugin_host import format_value, get_registry

            spec = get_registry().get_filter(args.filter)
            for name, value in spec.preview_params.items():
                param = spec.param_index[name]
                if value == param.default:
                    continue
                if param.kind == "bool":
                    args.params.append(param.flag if value else "--no-" + param.flag[2:])
                else:
                    args.params += [param.flag, format_value(param, value)]
        args.params += shlex.split(args.filter_args)
        if sizes:
            by_size: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
            for i in range(args.repeat):
                for size in sizes:
                    by_size[size].append(run_once(work / "photos", work / f"out{i}-{size}", args, env, size))
            print_batch_sizes(args, by_size)
            return
        runs = [run_once(work / "photos", work / f"out{i}", args, env) for i in range(args.repeat)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"{args.files} photos {args.size}x{args.size}, filter {args.filter}, jobs {args.jobs}, {args.repeat} runs (medians):")
    print(f"  batch wall time          {median['wall']:.2f} s   (whole process incl. start-up: {median['process_wall']:.2f} s)")
    print(f"  sum of filter compute    {median['compute']:.2f} s   ({1000 * median['compute'] / args.files:.0f} ms per photo)")
    print(f"  overhead                 {100 * median['overhead']:+.1f} %  (wall / (compute / jobs) - 1)")
    print("  per run: " + ", ".join(f"{100 * r['overhead']:+.1f} %" for r in runs))


def print_batch_sizes(args: argparse.Namespace, by_size: dict[int, list[dict[str, float]]]) -> None:
    """Median wall and compute per batch size, as ratios to batch size 1 of the same run."""
    wall = {size: statistics.median(run["wall"] for run in runs) for size, runs in by_size.items()}
    compute = {size: statistics.median(run["compute"] for run in runs) for size, runs in by_size.items()}
    flags = " ".join(args.params)
    print(f"{args.files} photos {args.size}x{args.size}, filter {args.filter} {flags}".rstrip()
          + f", jobs {args.jobs}, {args.repeat} runs (medians):")
    print("  batch size   wall s   wall / size 1   compute s   compute / size 1   per run (wall s)")
    for size in by_size:
        runs = ", ".join(f"{run['wall']:.2f}" for run in by_size[size])
        print(f"  {size:>10}   {wall[size]:6.2f}   {wall[size] / wall[1]:13.2f}   {compute[size]:9.2f}"
              f"   {compute[size] / compute[1]:16.2f}   {runs}")


if __name__ == "__main__":
    main()
