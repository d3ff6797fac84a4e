"""Generate the docs gallery: every registered filter on several photos (``make gallery``).

Usage::

    .venv/bin/python docs/make_gallery.py [--size 256] [--only NAME ...]

For each filter of the registry (so a filter merged later appears on the next
run), the filter runs on scikit-image's public-domain sample photos at
``--size`` pixels on the longer side, with its ``preview_params`` updated by the
small ``OVERRIDES`` table below (the gallery wants better-looking results than
a smoke test), from the embedded models, seed 0. It writes
``docs/assets/gallery-<filter>-<photo>.jpg`` (and the originals as
``gallery-original-<photo>.jpg``) and rewrites the block between
``<!-- gallery:start -->`` and ``<!-- gallery:end -->`` in ``docs/gallery.md``.
``--only`` reruns some filters and keeps the other filters' entries.
Everything is seeded: a rerun on the same machine gives the same images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import neurofilters
from neurofilters.plugin_host import build_registry
from neurofilters.plugin_host.core.params import format_value, validate_params

DOCS = Path(__file__).resolve().parent
ASSETS = DOCS / "assets"
PAGE = DOCS / "gallery.md"
BLOCK_RE = re.compile(r"<!-- gallery:start -->\n.*?<!-- gallery:end -->", re.S)
ENTRY_RE = re.compile(r"<!-- gallery-filter:(?P<name>[a-z0-9-]+) -->\n.*?<!-- /gallery-filter -->\n", re.S)

#: The photos: scikit-image's sample images (brick and grass are textures).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass")
#: Per filter: parameter values over its preview_params. An image parameter may
#: name one of PHOTOS (``"brick"``): the script passes that photo's pixels.
OVERRIDES: dict[str, dict[str, Any]] = {
    "deepdream": {"steps": 8, "octaves": 3},
    "activation-maps": {"display": "overlay", "work_size": 224},
    # Dreamed into the photo at the filter's defaults (--start image, strength 1: the class visibly added).
    "hallucinate": {"start": "image", "class_": "flamingo", "steps": 128, "work_size": 224},
    "adversarial": {"target": "flamingo", "epsilon": 4, "steps": 10},
    "feature-inversion": {"steps": 60},
    "texture": {"steps": 30, "octaves": 2},
    "style-transfer": {"style": "rocket", "steps": 30, "octaves": 2},
}
#: Per filter: the photos it runs on (default: all of PHOTOS), for slow filters.
PHOTOS_FOR: dict[str, tuple[str, ...]] = {
    "hallucinate": ("astronaut", "chelsea", "coffee"),
    "adversarial": ("chelsea", "coffee"),
    "feature-inversion": ("chelsea", "coffee"),
    "texture": ("brick", "grass"),
    "style-transfer": ("astronaut", "chelsea"),
}
#: Per filter: more rows, each (label, values over the filter's declared
#: defaults -- not its preview_params --, photos); their pictures are
#: ``gallery-<filter>-<label>-<photo>.jpg``.
VARIANTS: dict[str, list[tuple[str, dict[str, Any], tuple[str, ...]]]] = {
    "deepdream": [("vgg16-hed", {"model": "vgg16-hed"}, ("astronaut", "chelsea", "coffee"))],
}
#: Filters whose change is too small to see: their row also shows the change itself, amplified this many times
#: around grey, and the network's top-1 before and after (from the result's summary) under each picture.
AMPLIFIED = {"adversarial": 20}
SEED = 0
QUALITY = 82


def load_photo(name: str, size: int) -> np.ndarray:
    """A sample photo as float32 RGB in [0, 1], ``size`` pixels on its longer side."""
    from skimage import data

    pixels = getattr(data, name)()
    picture = Image.fromarray(pixels).convert("RGB")
    scale = size / max(picture.size)
    picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))), Image.LANCZOS)
    return np.asarray(picture, np.float32) / 255.0


def save_jpeg(pixels: np.ndarray, path: Path) -> None:
    """Write float pixels (grey or RGB, in [0, 1]) as a web JPEG."""
    pixels = np.clip(np.asarray(pixels, np.float32), 0.0, 1.0)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
    Image.fromarray((pixels * 255 + 0.5).astype(np.uint8)).save(path, quality=QUALITY, optimize=True, progressive=True)


def settings(spec: Any, size: int, extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """The filter's gallery values (image parameters loaded) and their CLI flags.

    Args:
        spec: The filter.
        size: The pictures' longer side (for image parameters naming a photo).
        extra: A variant's values (over the declared defaults); None: the
            filter's ``preview_params`` updated by its ``OVERRIDES``.
    """
    values = dict(extra) if extra is not None else {**spec.preview_params, **OVERRIDES.get(spec.name, {})}
    images = {param.name for param in spec.params if param.kind == "image"}
    plain = {key: value for key, value in values.items() if key not in images or value is None}
    validated = validate_params(spec.params, plain, check_files=False, check_required=False)  # images come below
    flags = []
    for param in spec.params:
        if param.name in images:
            if values.get(param.name) is not None:
                shown = f"{values[param.name]}.png" if values[param.name] in PHOTOS else Path(str(values[param.name])).name
                flags.append(f"{param.flag} {shown}")
            continue
        text, default = format_value(param, validated[param.name]), format_value(param, param.default)
        if text != default:
            flags.append(f"{param.flag} {text}")
    loaded = {
        key: (load_photo(value, size) if key in images and value in PHOTOS else value)  # a file path is loaded by the host
        for key, value in values.items()
    }
    return loaded, " ".join(flags)


def row_markdown(spec: Any, flags: str, stem: str, photos: tuple[str, ...], captions: dict[str, str] | None = None) -> str:
    """One row of a filter's section: the command, then its pictures (and amplified changes, see :data:`AMPLIFIED`)."""
    command = f"neurofilters run {spec.name} photo.jpg -o out.png {flags}".rstrip()
    gain = AMPLIFIED.get(spec.name)
    figures = "\n".join(
        f'<figure markdown="span">![{spec.title} on {photo}](assets/{stem}-{photo}.jpg)'
        f"<figcaption>{(captions or {}).get(photo, photo)}</figcaption></figure>"
        + (f'\n<figure markdown="span">![the change on {photo}, x{gain}](assets/{stem}-{photo}-change.jpg)'
           f"<figcaption>the change x{gain}</figcaption></figure>" if gain else "")
        for photo in photos
    )
    return f"```{{.bash .nf-command}}\n{command}\n```\n\n<div class=\"nf-gallery\" markdown>\n{figures}\n</div>\n\n"


def entry_markdown(spec: Any, rows: list[str]) -> str:
    """One filter's section of the gallery page."""
    page = DOCS / "filters" / f"{spec.name}.md"
    title = f"[{spec.title}](filters/{spec.name}.md)" if page.is_file() else spec.title
    return f"<!-- gallery-filter:{spec.name} -->\n## {title}\n\n{spec.summary}\n\n{''.join(rows)}<!-- /gallery-filter -->\n"


def render(spec: Any, size: int, extra: dict[str, Any] | None, stem: str, photos: tuple[str, ...]) -> str:
    """Run the filter on ``photos``, write the pictures ``<stem>-<photo>.jpg``; return the row's Markdown."""
    values, flags = settings(spec, size, extra)
    captions = {}
    for photo in photos:
        original = load_photo(photo, size)
        result = neurofilters.apply(spec.name, original, seed=SEED, params=values)
        save_jpeg(result.pixels, ASSETS / f"{stem}-{photo}.jpg")
        gain = AMPLIFIED.get(spec.name)
        if gain:
            change = np.clip(0.5 + gain * (result.pixels[:, :, :3] - original[:, :, :3]), 0.0, 1.0)
            save_jpeg(change, ASSETS / f"{stem}-{photo}-change.jpg")
            # "lite0 before: tabby (281) 0.412, ..." -> "tabby"; the caption reads photo: before -> after
            tops = [line.split(": ", 1)[1].split(" (")[0] for line in result.summary.splitlines()[:2]]
            captions[photo] = f"{photo}: {tops[0]} → {tops[1]}" if len(tops) == 2 else photo
        print(f"{stem} on {photo}", flush=True)
    return row_markdown(spec, flags, stem, photos, captions)


def originals_markdown(size: int) -> str:
    """The gallery's first row: the photos themselves."""
    figures = "\n".join(
        f'<figure markdown="span">![{photo}](assets/gallery-original-{photo}.jpg)<figcaption>{photo}</figcaption></figure>'
        for photo in PHOTOS
    )
    return f"## The photos\n\n<div class=\"nf-gallery\" markdown>\n{figures}\n</div>\n\n"


#: The filters whose pictures differ most from the photos come first; add-noise and adversarial (changes too
#: small to see at this size, by design) come last.
LEAD = ("deepdream", "hallucinate", "style-transfer", "texture")
LAST = ("add-noise", "adversarial")


def gallery_order(spec: Any) -> tuple[int, int, str, str]:
    """Where a filter's section goes: :data:`LEAD` first, :data:`LAST` last, the others by category and name."""
    if spec.name in LEAD:
        return (0, LEAD.index(spec.name), "", "")
    if spec.name in LAST:
        return (2, LAST.index(spec.name), "", "")
    return (1, 0, spec.category, spec.name)


def main(argv: list[str]) -> int:
    """Run every filter (or ``--only`` some) and rewrite the gallery page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="longer side of each picture, in pixels")
    parser.add_argument("--only", nargs="*", default=None, help="filters to (re)generate; the others keep their entries")
    args = parser.parse_args(argv)
    ASSETS.mkdir(exist_ok=True)
    registry = build_registry(autoload=False)
    specs = sorted(registry.filters.values(), key=gallery_order)
    unknown = set(args.only or ()) - set(registry.filters)
    if unknown:
        parser.error(f"unknown filters: {', '.join(sorted(unknown))}. Registered: {', '.join(sorted(registry.filters))}")
    for photo in PHOTOS:
        save_jpeg(load_photo(photo, args.size), ASSETS / f"gallery-original-{photo}.jpg")
    text = PAGE.read_text()
    block = BLOCK_RE.search(text)
    if block is None:
        parser.error(f"{PAGE} has no <!-- gallery:start --> ... <!-- gallery:end --> block")
    old_entries = {match.group("name"): match.group(0) for match in ENTRY_RE.finditer(block.group(0))}
    entries = []
    for spec in specs:
        if args.only is not None and spec.name not in args.only and spec.name in old_entries:
            entries.append(old_entries[spec.name])
            continue
        rows = [render(spec, args.size, None, f"gallery-{spec.name}", PHOTOS_FOR.get(spec.name, PHOTOS))]
        for label, extra, photos in VARIANTS.get(spec.name, []):
            rows.append(render(spec, args.size, extra, f"gallery-{spec.name}-{label}", photos))
        entries.append(entry_markdown(spec, rows))
    body = originals_markdown(args.size) + "\n".join(entries)
    PAGE.write_text(BLOCK_RE.sub(lambda _: f"<!-- gallery:start -->\n{body}<!-- gallery:end -->", text))
    print(f"updated {PAGE.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
