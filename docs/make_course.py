"""Make docs/course.md, "The course, reproduced", and its pictures in docs/course/.

This script owns ``docs/course.md``, every file in ``docs/course/`` and its scratch folder
``build/course/``. Each figure of the page is made by real ``neurofilters`` command lines,
run through the project's own command-line entry point
(``neurofilters.plugin_host.cli.main.main``) in the scratch folder, so the command printed
under a figure is the one that made it. The script only prepares inputs (sample photos at
web size, a small training folder) and lays finished outputs side by side with Pillow.

Figures follow the order of the course notes: InceptionV3 dreams layer by layer and two
combinations, octaves, Gaussian smoothing, a guided dream, a daisy the network calls a
flamingo (targeted and untargeted), top-activating patches and guided backprop, a fully
connected unit, universal class noise, inversion by depth, a Gram texture, similar
images, and a fine-tuning run.

Usage: ``python docs/make_course.py [--only KEY[,KEY...]]`` (``make gallery`` runs it;
three to four minutes on a busy 2-core CPU). With ``--only`` the other figures keep their
stored records (``docs/course/records.json``) and the page is rewritten from all of them.
Every command is seeded (``--seed 0``), so a rerun gives the same pictures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FIGURES = DOCS / "course"
PAGE = DOCS / "course.md"
RECORDS = FIGURES / "records.json"
WORK = ROOT / "build" / "course"

#: A real daisy-family photograph shipped by Debian's mate-backgrounds (GPL-2+, Charles Barbin, 2008).
DAISY_SYSTEM = Path("/usr/share/backgrounds/mate/nature/YellowFlower.jpg")
#: The web-size copy this script keeps, so the page can be remade where the package is missing.
DAISY_COPY = FIGURES / "daisy-photo.jpg"
MATE = Path("/usr/share/backgrounds/mate")
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "camera")
NSFWJS = "inception-v3-nsfwjs"
SIDE = 256  # the longer side of every input photo: small, so the whole page takes minutes


@dataclass
class Record:
    """One figure of the page: what the course showed, what ours shows, and the commands that made it."""

    key: str
    title: str
    course: str
    ours: str = ""
    image: str = ""
    extra_images: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    output: str = ""
    missing: str = ""
    seconds: float = 0.0


class CommandFailed(RuntimeError):
    """A neurofilters command of a figure exited with a non-zero status."""


# --------------------------------------------------------------------------- running commands


def neurofilters(record: Record, *argv: str, keep_output: bool = False) -> str:
    """Run ``neurofilters ARGV`` in the scratch folder through the CLI's entry point; return its stdout.

    The command line is added to the figure's record as typed; with ``keep_output`` its printed
    output is shown on the page too. A non-zero exit raises :class:`CommandFailed` with its message.
    """
    from neurofilters.plugin_host.cli.main import main

    line = "neurofilters " + shlex.join(argv)
    for flag in ("-o", "--output"):
        if flag in argv[:-1]:  # the commands write into existing folders only
            (WORK / argv[argv.index(flag) + 1]).parent.mkdir(parents=True, exist_ok=True)
    print(f"  $ {line}", flush=True)
    out, err = io.StringIO(), io.StringIO()
    here = Path.cwd()
    os.chdir(WORK)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.chdir(here)
    record.commands.append(line)
    text = out.getvalue().rstrip()
    if code != 0:
        message = [row for row in err.getvalue().splitlines() if "error" in row] or err.getvalue().splitlines()[-1:]
        raise CommandFailed(f"{line}\n[exit status {code}] {' '.join(message).strip()}")
    if keep_output and text:
        record.output += ("\n\n" if record.output else "") + f"$ {line}\n{text}"
    return text


# --------------------------------------------------------------------------- pictures


def _font(size: int = 13) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def load(path: Path | str, side: int | None = None) -> Image.Image:
    """An RGB image from the scratch folder (relative paths) or anywhere, the longer side at most ``side``."""
    image = Image.open(WORK / path if not Path(path).is_absolute() else path).convert("RGB")
    if side is not None and max(image.size) > side:
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def sheet(tiles: list[tuple[Image.Image, str]], columns: int, name: str, tile: int = SIDE) -> str:
    """Lay labelled tiles in a grid (each fitted into ``tile`` x ``tile``) and save it as docs/course/NAME."""
    label_h = 20
    rows = (len(tiles) + columns - 1) // columns
    fitted = []
    for image, label in tiles:
        copy = image.copy()
        copy.thumbnail((tile, tile), Image.Resampling.LANCZOS)
        fitted.append((copy, label))
    cell_h = max(image.height for image, _ in fitted) + label_h
    canvas = Image.new("RGB", (columns * (tile + 4) + 4, rows * (cell_h + 4) + 4), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (image, label) in enumerate(fitted):
        x = 4 + (index % columns) * (tile + 4)
        y = 4 + (index // columns) * (cell_h + 4)
        canvas.paste(image, (x + (tile - image.width) // 2, y))
        draw.text((x + 2, y + image.height + 3), label, fill="black", font=_font())
    FIGURES.mkdir(parents=True, exist_ok=True)
    canvas.save(FIGURES / name, quality=85)
    print(f"  wrote docs/course/{name} ({canvas.width}x{canvas.height})", flush=True)
    return name


def copy_figure(source: str, name: str, side: int = 900) -> str:
    """A picture a command wrote (a contact sheet, a confusion matrix) at web size, as docs/course/NAME."""
    image = load(source, side)
    FIGURES.mkdir(parents=True, exist_ok=True)
    image.save(FIGURES / name, quality=85)
    print(f"  wrote docs/course/{name} ({image.width}x{image.height})", flush=True)
    return name


def difference(a: str, b: str, gain: float = 10.0) -> Image.Image:
    """|a - b| amplified ``gain`` times around grey: where and how much a filter changed the photo."""
    first = np.asarray(load(a), np.float32)
    second = np.asarray(load(b).resize(load(a).size), np.float32)
    return Image.fromarray(np.clip(128 + gain * (second - first), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- inputs


def save_input(image: Image.Image, relative: str, side: int = SIDE) -> str:
    """Write an input picture into the scratch folder with the longer side ``side``."""
    image = image.convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    target = WORK / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return relative


def centre_square(image: Image.Image, fraction: float = 1.0) -> Image.Image:
    """The centred square of the image's shorter side times ``fraction``."""
    side = int(min(image.size) * fraction)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def daisy_source() -> Image.Image | None:
    """The daisy photograph: Debian's file where installed, else this page's stored copy."""
    if DAISY_SYSTEM.is_file():
        return centre_square(Image.open(DAISY_SYSTEM), 0.9)
    if DAISY_COPY.is_file():
        return Image.open(DAISY_COPY)
    return None


def mate_photos() -> dict[str, list[Path]]:
    """MATE's wallpapers by kind: photographs of nature, and drawn graphics."""
    nature = sorted((MATE / "nature").glob("*.jpg"))
    graphics = sorted(path for folder in ("abstract", "desktop") for path in (MATE / folder).glob("*")
                      if path.suffix in (".jpg", ".png") and "_3840" not in path.stem and "_5640" not in path.stem
                      and "Transparent" not in path.stem)
    return {"nature": nature, "graphics": graphics}


def prepare_inputs() -> dict[str, str]:
    """Sample photos, the daisy and the explorer's folder in build/course; returns names -> relative paths."""
    from skimage import data

    WORK.mkdir(parents=True, exist_ok=True)
    paths = {name: save_input(Image.fromarray(getattr(data, name)()), f"photos/{name}.png") for name in SKIMAGE_PHOTOS}
    daisy = daisy_source()
    if daisy is not None:
        paths["daisy"] = save_input(daisy, "photos/daisy.jpg")
        FIGURES.mkdir(parents=True, exist_ok=True)
        if not DAISY_COPY.is_file():
            copy = daisy.convert("RGB")
            copy.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
            copy.save(DAISY_COPY, quality=90)
    # The explorer's folder: scikit-image's photos and crops of MATE's wallpapers (where installed).
    folder = WORK / "folder"
    if folder.exists():
        shutil.rmtree(folder)
    for name in SKIMAGE_PHOTOS:
        save_input(centre_square(Image.open(WORK / paths[name])), f"folder/{name}.png", 224)
    for kind, files in mate_photos().items():
        for path in files:
            if path.name != DAISY_SYSTEM.name:
                save_input(centre_square(Image.open(path)), f"folder/{kind}-{path.stem.lower()}.jpg", 224)
    paths["folder"] = "folder"
    Image.new("RGB", (512, 512), "grey").save(WORK / "canvas-512.png")
    return paths


# --------------------------------------------------------------------------- the figures

Figure = Callable[[Record, dict[str, str]], None]


def fig_layers(record: Record, paths: dict[str, str]) -> None:
    tiles = [(load(paths["chelsea"]), "photo")]
    for index in range(11):
        out = f"dream/mixed{index}.png"
        neurofilters(record, "run", "deepdream", paths["chelsea"], "-o", out, "--model", NSFWJS,
                     "--layers", f"mixed{index}", "--seed", "0", "--overwrite")
        tiles.append((load(out), f"mixed{index}"))
    record.image = sheet(tiles, 4, "dream-layers.jpg")


def fig_combinations(record: Record, paths: dict[str, str]) -> None:
    runs = (("mixed3,mixed5", "1", "mixed3+mixed5, one scale"), ("mixed3,mixed7", "4", "mixed3+mixed7, 4 octaves"))
    tiles = [(load(paths["chelsea"]), "photo")]
    for layers, octaves, label in runs:
        out = f"dream/{layers.replace(',', '+')}.png"
        neurofilters(record, "run", "deepdream", paths["chelsea"], "-o", out, "--model", NSFWJS, "--layers", layers,
                     "--octaves", octaves, "--seed", "0", "--overwrite")
        tiles.append((load(out), label))
    record.image = sheet(tiles, 3, "dream-combinations.jpg")


def fig_octaves(record: Record, paths: dict[str, str]) -> None:
    tiles = [(load(paths["astronaut"]), "photo")]
    for octaves in ("1", "4"):
        out = f"dream/octaves-{octaves}.png"
        neurofilters(record, "run", "deepdream", paths["astronaut"], "-o", out, "--model", NSFWJS, "--layers", "mixed4",
                     "--octaves", octaves, "--steps", "12", "--seed", "0", "--overwrite")
        tiles.append((load(out), "no octaves (one scale)" if octaves == "1" else f"{octaves} octaves, scale 1.4"))
    record.image = sheet(tiles, 3, "dream-octaves.jpg")


def fig_smoothing(record: Record, paths: dict[str, str]) -> None:
    tiles = [(load(paths["astronaut"]), "photo")]
    for smoothing, extra in (("none", []), ("gaussian", ["--smoothing-sigma", "1.5"])):
        out = f"dream/smoothing-{smoothing}.png"
        neurofilters(record, "run", "deepdream", paths["astronaut"], "-o", out, "--model", NSFWJS, "--layers", "mixed4",
                     "--octaves", "1", "--steps", "12", "--jitter", "0", "--smoothing", smoothing, *extra,
                     "--seed", "0", "--overwrite")
        tiles.append((load(out), "no smoothing" if smoothing == "none" else "Gaussian, sigma 1.5 px"))
    record.image = sheet(tiles, 3, "dream-smoothing.jpg")


def fig_guided(record: Record, paths: dict[str, str]) -> None:
    guide = paths.get("daisy", paths["coffee"])
    out = "dream/guided.png"
    neurofilters(record, "run", "deepdream", paths["chelsea"], "-o", out, "--model", NSFWJS, "--layers", "mixed3,mixed5",
                 "--guide", guide, "--seed", "0", "--overwrite")
    unguided = "dream/mixed3+mixed5-auto.png"
    neurofilters(record, "run", "deepdream", paths["chelsea"], "-o", unguided, "--model", NSFWJS,
                 "--layers", "mixed3,mixed5", "--seed", "0", "--overwrite")
    record.image = sheet([(load(paths["chelsea"]), "photo"), (load(guide), "guide"),
                          (load(out), "dream guided by it"), (load(unguided), "the same dream, no guide")], 4,
                         "dream-guided.jpg", tile=200)


def _adversarial(record: Record, paths: dict[str, str], target: str, name: str) -> None:
    if "daisy" not in paths:
        raise CommandFailed("no daisy photograph: install Debian's mate-backgrounds (apt-get install mate-backgrounds)")
    out = f"adversarial/{name}.png"
    neurofilters(record, "run", "adversarial", paths["daisy"], "-o", out, "--target", target, "--epsilon", "4",
                 "--seed", "0", "--overwrite", keep_output=True)
    neurofilters(record, "classify", paths["daisy"], out, "--top", "3", keep_output=True)
    record.image = sheet([(load(paths["daisy"]), "the photograph"), (load(out), f"--target {target}, epsilon 4/255"),
                          (difference(paths["daisy"], out), "change x10 (grey = none)")], 3, f"{name}.jpg")


def fig_flamingo(record: Record, paths: dict[str, str]) -> None:
    _adversarial(record, paths, "flamingo", "daisy-flamingo")


def fig_untargeted(record: Record, paths: dict[str, str]) -> None:
    _adversarial(record, paths, "none", "daisy-untargeted")


PATCH_LAYER, PATCH_CHANNEL = "block4_conv3", "12"  # VGG16's block4_conv3: 92-pixel receptive fields


def fig_patches(record: Record, paths: dict[str, str]) -> None:
    # One command, its own sheet: each top patch beside the unit's guided-backprop map at that position,
    # computed on the exact (resized) image the search used, so patch and map are the same cell and field.
    neurofilters(record, "explore", "patches", "vgg16-hed", PATCH_LAYER, PATCH_CHANNEL, paths["folder"], "-o",
                 "patches/sheet-maps.png", "-k", "6", "--tile", "112", "--maps", "--overwrite", keep_output=True)
    record.image = copy_figure("patches/sheet-maps.png", "patches.jpg")


def fig_dense(record: Record, paths: dict[str, str]) -> None:
    photo = paths.get("daisy", paths["coffee"])
    out = "saliency/logits-985.png"
    neurofilters(record, "run", "saliency", photo, "-o", out, "--method", "guided-backprop", "--target", "channel",
                 "--target-layer", "logits", "--channel", "985", "--display", "grey", "--seed", "0", "--overwrite")
    record.image = sheet([(load(photo), "photo"), (load(out), "logits unit 985 (daisy), guided backprop")], 2,
                         "dense-unit.jpg")


def fig_noise(record: Record, paths: dict[str, str]) -> None:
    neurofilters(record, "fit-noise", paths["folder"], "--class", "flamingo", "-o", "noise/flamingo.npz",
                 "--epsilon", "16", "--epochs", "60", "--batch-size", "8", "--seed", "0", "--overwrite",
                 keep_output=True)
    tiles = []
    for name in ("chelsea", "daisy" if "daisy" in paths else "coffee"):
        out = f"noise/{name}-flamingo.png"
        neurofilters(record, "run", "add-noise", paths[name], "-o", out, "--noise", "noise/flamingo.png", "--seed", "0",
                     "--overwrite")
        neurofilters(record, "classify", paths[name], out, "--top", "3", keep_output=True)
        tiles += [(load(paths[name]), name), (load(out), f"{name} + the noise")]
    noise = np.asarray(Image.open(WORK / "noise/flamingo.png"), np.float32)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6) * 255
    tiles.append((Image.fromarray(noise.astype(np.uint8)).convert("RGB"), "the noise, stretched"))
    record.image = sheet(tiles, 5, "universal-noise.jpg", tile=200)


def fig_inversion(record: Record, paths: dict[str, str]) -> None:
    tiles = [(load(paths["chelsea"]), "photo")]
    for layer in ("block2", "block5", "block10", "block15"):
        out = f"inversion/{layer}.png"
        neurofilters(record, "run", "feature-inversion", paths["chelsea"], "-o", out, "--layer", layer,
                     "--steps", "100", "--work-size", "128", "--seed", "0", "--overwrite")
        tiles.append((load(out), f"from {layer}"))
    record.image = sheet(tiles, 5, "inversion-depth.jpg", tile=200)


def fig_texture(record: Record, paths: dict[str, str]) -> None:
    out = "texture/brick-512.png"
    neurofilters(record, "run", "texture", "canvas-512.png", "-o", out, "--source", paths["brick"], "--seed", "0",
                 "--overwrite")
    record.image = sheet([(load(paths["brick"]), "the sample (scikit-image brick)"),
                          (load(out), "512 x 512 synthesised (shown at 384)")], 2, "texture-512.jpg", tile=384)


def fig_similar(record: Record, paths: dict[str, str]) -> None:
    query = paths.get("daisy", paths["coffee"])
    tiles = []
    for layer in ("block5_expand_act", "logits"):
        out = f"similar/{layer}.png"
        neurofilters(record, "explore", "similar", query, paths["folder"], "--layer", layer, "--top", "5", "-o", out,
                     "--overwrite", keep_output=True)
        tiles.append((load(out), f"--layer {layer}"))
    record.image = sheet(tiles, 2, "similar.jpg", tile=440)


def fig_finetune(record: Record, paths: dict[str, str]) -> None:
    kinds = mate_photos()
    if not all(kinds.values()):
        raise CommandFailed("no training photos: install Debian's mate-backgrounds (apt-get install mate-backgrounds)")
    data = WORK / "walls"
    if data.exists():
        shutil.rmtree(data)
    rng = np.random.default_rng(0)
    for kind, files in kinds.items():
        for path in files:
            picture = Image.open(path).convert("RGB")
            picture.thumbnail((640, 640), Image.Resampling.LANCZOS)
            for number in range(3):
                side = int(min(picture.size) * rng.uniform(0.5, 0.9))
                left = int(rng.integers(0, picture.width - side + 1))
                top = int(rng.integers(0, picture.height - side + 1))
                crop = picture.crop((left, top, left + side, top + side))
                save_input(crop, f"walls/{kind}/{path.stem.lower().replace('_', '-')}-{number}.jpg", 160)
    for leftover in WORK.glob("walls-model*"):
        shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    neurofilters(record, "finetune", "walls", "-o", "walls-model.keras", "--image-size", "160", "--epochs", "4",
                 "--seed", "0", "--quiet", "--overwrite", keep_output=True)
    text = record.output
    if not (WORK / "walls-model-confusion.png").is_file():
        raise CommandFailed("finetune wrote no confusion picture beside the model")
    record.image = confusion_picture(text, "finetune-confusion.png")


def confusion_picture(report: str, name: str, cell: int = 64) -> str:
    """The confusion matrix finetune printed, drawn with its class names and counts (darker = more images)."""
    lines = report.split("confusion (rows: true class, columns: predicted):", 1)[1].strip().splitlines()
    classes = lines[0].split()
    counts = np.array([[int(word) for word in row.split()[1:]] for row in lines[2 : 2 + len(classes)]])
    margin = 90
    canvas = Image.new("RGB", (max(300, margin + cell * len(classes) + 8), margin + cell * len(classes) + 28), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(14)
    for column, label in enumerate(classes):
        draw.text((margin + column * cell + 4, margin - 22), label, fill="black", font=font)
    for row, label in enumerate(classes):
        draw.text((4, margin + row * cell + cell // 2 - 8), label, fill="black", font=font)
        for column in range(len(classes)):
            share = counts[row, column] / max(1, counts[row].sum())
            shade = int(255 - 180 * share)
            box = (margin + column * cell, margin + row * cell, margin + (column + 1) * cell - 2, margin + (row + 1) * cell - 2)
            draw.rectangle(box, fill=(shade, shade, 255), outline=(160, 160, 160))
            draw.text((box[0] + cell // 2 - 8, box[1] + cell // 2 - 8), str(counts[row, column]), fill="black", font=font)
    draw.text((4, 4), "rows: true class", fill="black", font=font)
    draw.text((4, 22), "columns: predicted", fill="black", font=font)
    draw.text((4, canvas.height - 22), "validation images (held-out sources)", fill="black", font=font)
    canvas.save(FIGURES / name)
    print(f"  wrote docs/course/{name} ({canvas.width}x{canvas.height})", flush=True)
    return name


# --------------------------------------------------------------------------- the page's text

INTRO = """# The course, reproduced

The project began as the exercises of a set of course notes on what convolutional networks see.
This page reproduces each figure of those notes with `neurofilters` itself. Every picture below was
made by the commands printed under it, run through the project's command-line entry point by
`docs/make_course.py` (`make gallery` reruns it), so
each command is known to work as shown. Inputs are small (256 px) and runs short (default steps, or
fewer) so that the whole page is remade in minutes on a laptop's CPU, so the pictures are smaller and
weaker than a full-size run of the same commands. All commands are seeded (`--seed 0`): a rerun gives
the same pictures.

Inputs: scikit-image's sample photographs (`python docs/examples/sample_photo.py NAME OUT`),
reduced to 256 px on the longer side; the **daisy** is `YellowFlower.jpg` of Debian's
`mate-backgrounds` package (a yellow daisy-family flower photographed by Charles Barbin, GPL-2+;
EfficientNet-Lite0 calls it "daisy"), cropped to its centre; the folder the explorer searches holds
those photos and centre crops of the other MATE wallpapers.

**The network.** The course dreams on InceptionV3 with Keras' ImageNet weights. Those weights are a
download this project cannot count on, so the dreams use `inception-v3-nsfwjs`
(`neurofilters models fetch inception-v3-nsfwjs`, see [the model zoo](models.md)): the same
architecture whose layers up to `mixed5` carry Keras' ImageNet weights (quantised to 8 bits), while
`mixed6` … `mixed10` were fine-tuned by the nsfwjs authors on another task. So the early and middle
dreams are the course's; the deep ones show what that other training made of the network. The
classifier figures (adversarial, saliency, noise, similar images, fine-tuning) use the embedded
EfficientNet-Lite0, which has ImageNet's 1,000 classes.
"""


def render(records: list[Record], total_seconds: float | None) -> str:
    """The Markdown page from the figure records."""
    parts = [INTRO]
    parts.append("\n## Contents\n")
    parts += [f"- [{record.title}](#{record.key}){' — *missing*' if record.missing else ''}" for record in records]
    for record in records:
        parts.append(f"\n## {record.title} {{#{record.key}}}\n")
        parts.append(f"**The course:** {record.course}\n")
        if record.missing:
            parts.append(f"!!! warning \"Not reproduced yet\"\n    {record.missing}\n")
        else:
            parts.append(f"**Here:** {record.ours}\n")
            if record.image:
                parts.append(f"![{record.title}](course/{record.image})\n")
            parts += [f"![{record.title}, continued](course/{name})\n" for name in record.extra_images]
        if record.commands:
            parts.append("Made by:\n\n```{.bash .nf-command}\n" + "\n".join(record.commands) + "\n```\n")
        if record.output and not record.missing:
            parts.append("What the commands printed:\n\n```{.text .nf-output}\n" + record.output + "\n```\n")
    timing = f" The last full run took {total_seconds / 60:.1f} minutes." if total_seconds else ""
    parts.append("\n---\n\nRemake this page with `make gallery` or `python docs/make_course.py` "
                 "(`--only KEY` remakes one figure; the keys are the anchors above)." + timing + "\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- the figure list

DAISY_NOTE = " The photograph is a yellow daisy-family flower, not the white oxeye daisy of ImageNet's class 985."
FIGURE_LIST: list[tuple[str, str, str, str, Figure]] = [
    ("dream-layers", "DeepDream layer by layer: mixed0 … mixed10",
     "eleven dreams of one photo on InceptionV3, one per `mixed` block, from edges and blobs at `mixed0` to "
     "object parts at `mixed10`.",
     "the same sweep on `inception-v3-nsfwjs` at 256 px with the default dream settings. `mixed0`–`mixed5` are "
     "ImageNet features as in the course; from `mixed6` on the weights were fine-tuned on nsfwjs' data, so "
     "the deep dreams show that network, not the ImageNet one the course used, and cannot be compared with the "
     "course's one to one.", fig_layers),
    ("dream-combinations", "Two layers at once: mixed3 + mixed5, and mixed3 + mixed7 with octaves",
     "a dream of `mixed3` and `mixed5` together, then `mixed3` and `mixed7` over several octaves.",
     "both combinations on `inception-v3-nsfwjs`: the first at one scale (`--octaves 1`), the second over four "
     "octaves; `mixed7` is one of the fine-tuned layers.", fig_combinations),
    ("dream-octaves", "Octaves versus one scale",
     "the same dream run at one scale, where the patterns are all of one small size, and over octaves, where "
     "larger structures appear.",
     "`mixed4` at one scale and over four octaves (scale 1.4), twelve steps each: at one scale only a fine "
     "texture covers the photo; over octaves larger, rounder structures (eyes, whorls) grow across the suit and "
     "the face.", fig_octaves),
    ("dream-smoothing", "Gaussian smoothing versus none",
     "gradient ascent without smoothing gives high-frequency noise; blurring the gradient gives smoother "
     "patterns.",
     "`--smoothing none` against `--smoothing gaussian --smoothing-sigma 1.5` (the default is 0.5), at one scale "
     "and without jitter so that only the smoothing differs.", fig_smoothing),
    ("dream-guided", "A guided dream",
     "a dream guided by a second image: each position is pulled towards the guide's most similar features.",
     "the cat guided by the daisy photograph (`--guide`), beside the same dream without a guide.", fig_guided),
    ("daisy-flamingo", "A daisy the network calls a flamingo",
     "a daisy photograph changed invisibly until the network says \"flamingo\".",
     "`adversarial --target flamingo` with a budget of 4/255 per pixel on EfficientNet-Lite0; `classify` before "
     "and after is printed below." + DAISY_NOTE, fig_flamingo),
    ("daisy-untargeted", "Untargeted: no longer a daisy",
     "the same photo changed so that the network no longer says \"daisy\", whatever it says instead.",
     "`adversarial --target none` (away from the class the network sees), same budget." + DAISY_NOTE,
     fig_untargeted),
    ("patches", "Top-activating patches of a unit, with their guided-backprop maps",
     "for one convolutional unit, the image patches (receptive fields) that activate it most, each beside its "
     "guided-backprop map.",
     "`explore patches --maps` for channel 12 of `block4_conv3` of `vgg16-hed` (VGG16's convolutions, "
     "ImageNet-trained, then fine-tuned for edges by HED) over the small folder, in one command and on its own "
     "contact sheet: the six most active positions, each as its 92-pixel receptive field with its score and, to "
     "its right, the unit's guided-backprop map at that position (grey, normalised as the `saliency` filter "
     "normalises guided backprop). The map is computed on the exact image the search used (resized to 224 px), "
     "so patch and map are the same cell and the same field whatever the size of the folder's images; where a "
     "field runs past the image's edge the patch shows grey padding and the map black. The folder is tiny (about 30 images), so the unit's favourites are less telling than the course's, which "
     "searched a large dataset.", fig_patches),
    ("dense-unit", "A fully connected unit",
     "the guided-backprop map of a unit of a fully connected layer, which sees the whole image.",
     "guided backprop of unit 985 (daisy) of Lite0's `logits` Dense layer on the daisy photograph. Lite0's only "
     "fully connected layer is its output, so this unit is a class score, not a hidden unit like the course's; the "
     "same command takes a hidden Dense layer of a `.keras` model (one made by `finetune`, for example).", fig_dense),
    ("universal-noise", "Universal class noise",
     "one noise pattern, learnt over many photos, that makes the network see a chosen class in any photo it is "
     "added to.",
     "`fit-noise` for \"flamingo\" over the small folder (about 30 images, 60 epochs, a budget of 16/255; the "
     "command warns that so few photos generalise poorly, and reports the fooling rate on photos held out of "
     "training), then `add-noise` on two photos and `classify` before and after: the cat (whose centre crop was one of "
     "the training photos) and the daisy (never seen by the fit). With so few photos it fools some photos and not "
     "others, as its fooling rate says; the course's noise, fitted on thousands of photos, was far stronger.", fig_noise),
    ("inversion-depth", "Feature inversion by depth",
     "images rebuilt from a layer's activations alone: exact from early layers, increasingly abstract from deep "
     "ones.",
     "`feature-inversion` from four depths of Lite0, 100 steps at 128 px (the course ran longer).", fig_inversion),
    ("texture-512", "A Gram-matrix texture",
     "a 512 x 512 texture synthesised by matching the Gram matrices of VGG features of a sample.",
     "`texture` on a 512 x 512 grey canvas with scikit-image's brick as the sample, default settings on "
     "`vgg16-hed` (VGG16 convolutions, fine-tuned for edges by HED, not the plain ImageNet VGG16).", fig_texture),
    ("similar", "Similar images at the last and an intermediate layer",
     "the images nearest to a query by features of the last layer (same kind of object) and of an intermediate "
     "layer (same colours and textures).",
     "`explore similar` with the daisy as the query over the folder: at Lite0's `block5_expand_act` "
     "(intermediate: colour and texture) and at `logits`, the last layer (fully connected: its 1,000 class scores "
     "compared as one vector). The folder is small and mostly flowers, so both lists overlap.", fig_similar),
    ("finetune", "Fine-tuning with a held-out measurement",
     "a network fine-tuned on new classes, with its accuracy on held-out data, a baseline and the confusion "
     "matrix.",
     "`finetune` of Lite0 on two classes made from MATE's wallpapers (\"nature\" photographs against drawn "
     "\"graphics\", three crops of each wallpaper at 160 px, four epochs). Validation keeps whole wallpapers out of "
     "training (crops of one wallpaper share a name up to the trailing number), and the report prints the "
     "nearest-class-mean baseline of the frozen features beside the fine-tuned accuracy; the picture is the "
     "confusion matrix the command printed (it also writes `walls-model-confusion.png`, one unlabelled square per "
     "cell). Nature photographs against drawings is an easy task: the figure shows the measurement, not a hard "
     "benchmark (see [Fine-tuning](finetune.md) for two harder datasets).", fig_finetune),
]


def main(argv: list[str] | None = None) -> int:
    """Make the figures (all, or those named with ``--only``) and rewrite docs/course.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated figure keys to remake; the others keep their records")
    args = parser.parse_args(argv)
    keys = [key for key, *_ in FIGURE_LIST]
    only = [key for key in args.only.split(",") if key]
    unknown = set(only) - set(keys)
    if unknown:
        parser.error(f"unknown figure keys {sorted(unknown)}; known: {', '.join(keys)}")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    stored = {}
    if RECORDS.is_file():
        stored = {entry["key"]: Record(**entry) for entry in json.loads(RECORDS.read_text())["figures"]}
    start = time.monotonic()
    paths = prepare_inputs()
    records = []
    for key, title, course, ours, make in FIGURE_LIST:
        if only and key not in only and key in stored:
            records.append(stored[key])
            continue
        record = Record(key=key, title=title, course=course, ours=ours)
        print(f"[{key}]", flush=True)
        began = time.monotonic()
        try:
            make(record, paths)
        except CommandFailed as failure:
            record.missing = (f"This figure could not be made with this version of the project. The command "
                              f"and its answer: `{str(failure).splitlines()[-1]}`")
            record.image = ""
            print(f"  MISSING: {failure}", flush=True)
        record.seconds = round(time.monotonic() - began, 1)
        records.append(record)
    total = time.monotonic() - start
    previous_total = json.loads(RECORDS.read_text()).get("total_seconds") if RECORDS.is_file() else None
    total_seconds = round(total, 1) if not only else previous_total
    FIGURES.mkdir(parents=True, exist_ok=True)
    RECORDS.write_text(json.dumps({"total_seconds": total_seconds, "figures": [asdict(r) for r in records]},
                                  indent=1) + "\n")
    PAGE.write_text(render(records, total_seconds))
    print(f"wrote {PAGE} ({len(records)} figures, {sum(bool(r.missing) for r in records)} missing) in {total:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
