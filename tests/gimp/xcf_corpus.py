"""Run INSIDE GIMP 3 (python-fu-eval): write the XCF test corpus and report what GIMP itself sees.

Not a test module: ``tests/test_xcf_real.py`` substitutes ``@WORK@`` (a folder
inside the chroot) and ``@TASK@`` (``write``: build the corpus; ``open``: only
describe the XCF/ORA files listed in ``@FILES@``) and feeds it to
``gimp-console-3.0``. For every file it writes ``<file>.json`` (the layer tree:
names, offsets, sizes, visibility, opacity, mode numbers, masks, precision, base
type) and one raw ``R'G'B'A u8`` dump per layer (``Y u8`` per mask), exported
by GIMP itself, so the test compares our reader against GIMP's own pixels.
Standard library and GObject introspection only (GIMP's Python has no NumPy).
"""

import json
import random

from gi.repository import Gegl, Gimp, Gio

WORK = "@WORK@"
TASK = "@TASK@"
FILES = json.loads(r"""@FILES@""")

NONE = Gimp.RunMode.NONINTERACTIVE


def fill(layer, seed, opaque=False):
    """Deterministic noise with a few flat areas (so RLE/zlib see runs too)."""
    w, h = layer.get_width(), layer.get_height()
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(w * h * 4))
    for i in range(0, len(data), 4):
        if (i // 4) % w < w // 4:
            data[i:i + 3] = bytes((200, 40, 90))
        if opaque:
            data[i + 3] = 255
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", bytes(data))
    layer.get_buffer().flush()
    layer.update(0, 0, w, h)


def new_layer(image, name, w, h, seed, parent=None, position=0, x=0, y=0, opacity=100.0, mode=None, alpha=True):
    kind = Gimp.ImageType.RGBA_IMAGE if alpha else Gimp.ImageType.RGB_IMAGE
    base = image.get_base_type()
    if base == Gimp.ImageBaseType.GRAY:
        kind = Gimp.ImageType.GRAYA_IMAGE if alpha else Gimp.ImageType.GRAY_IMAGE
    layer = Gimp.Layer.new(image, name, w, h, kind, opacity, mode if mode is not None else Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, parent, position)
    layer.set_offsets(x, y)
    fill(layer, seed, opaque=not alpha)
    return layer


def save(image, name):
    Gimp.file_save(NONE, image, Gio.File.new_for_path(WORK + "/" + name), None)


def build():
    # two layers with offsets and opacity, a hidden one
    image = Gimp.Image.new(120, 90, Gimp.ImageBaseType.RGB)
    new_layer(image, "Background", 120, 90, 1, alpha=False)
    new_layer(image, "sticker", 70, 50, 2, x=13, y=7, opacity=60.0)
    hidden = new_layer(image, "hidden note", 20, 10, 3, x=-5, y=80)
    hidden.set_visible(False)
    channel = Gimp.Channel.new(image, "saved selection", 120, 90, 50.0, Gegl.Color.new("red"))
    image.insert_channel(channel, None, 0)  # channels and paths are ignored by the reader
    path = Gimp.Path.new(image, "outline")
    path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, [10, 10, 10, 10, 10, 10, 60, 40, 60, 40, 60, 40], False)
    image.insert_path(path, None, 0)
    save(image, "offsets.xcf")

    # nested groups
    image = Gimp.Image.new(100, 80, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 100, 80, 4, alpha=False)
    outer = Gimp.GroupLayer.new(image, "outer")
    image.insert_layer(outer, None, 0)
    new_layer(image, "a", 30, 30, 5, parent=outer, x=10, y=10)
    inner = Gimp.GroupLayer.new(image, "inner")
    image.insert_layer(inner, outer, 0)
    new_layer(image, "b", 40, 20, 6, parent=inner, x=50, y=5, mode=Gimp.LayerMode.MULTIPLY)
    new_layer(image, "c", 25, 65, 7, parent=inner, position=1, x=2, y=3, opacity=80.0)
    inner.set_opacity(70.0)
    group_mask = inner.create_mask(Gimp.AddMaskType.WHITE)
    inner.add_mask(group_mask)
    gw, gh = group_mask.get_width(), group_mask.get_height()
    group_mask.get_buffer().set(Gegl.Rectangle.new(0, 0, gw, gh), "Y u8", bytes((255 - y * 3) % 256 for y in range(gh) for x in range(gw)))
    group_mask.get_buffer().flush()
    save(image, "groups.xcf")

    # a layer mask
    image = Gimp.Image.new(90, 70, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 90, 70, 8, alpha=False)
    masked = new_layer(image, "masked", 80, 66, 9, x=4, y=2)
    mask = masked.create_mask(Gimp.AddMaskType.WHITE)
    masked.add_mask(mask)
    ramp = bytes((x * 3) % 256 for y in range(66) for x in range(80))
    mask.get_buffer().set(Gegl.Rectangle.new(0, 0, 80, 66), "Y u8", ramp)
    mask.get_buffer().flush()
    save(image, "mask.xcf")

    # every layer mode GIMP 3 offers for a layer
    image = Gimp.Image.new(40, 30, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 40, 30, 10, alpha=False)
    for value in range(0, 64):
        try:
            mode = Gimp.LayerMode(value)
        except (ValueError, TypeError):
            continue
        layer = new_layer(image, "mode %d" % value, 12, 9, 100 + value, x=value % 30, y=value % 20)
        layer.set_mode(mode)
    save(image, "modes.xcf")

    # a text layer
    image = Gimp.Image.new(160, 50, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 160, 50, 11, alpha=False)
    font = Gimp.context_get_font()
    text = Gimp.TextLayer.new(image, "Neuro 42", font, 24.0, Gimp.Unit.pixel())
    image.insert_layer(text, None, 0)
    text.set_offsets(6, 8)
    save(image, "text.xcf")

    # precisions
    for name, precision in (("u16-linear.xcf", Gimp.Precision.U16_LINEAR), ("float-perceptual.xcf", Gimp.Precision.FLOAT_NON_LINEAR),
                            ("half-linear.xcf", Gimp.Precision.HALF_LINEAR), ("u32-perceptual.xcf", Gimp.Precision.U32_NON_LINEAR),
                            ("double-linear.xcf", Gimp.Precision.DOUBLE_LINEAR)):
        image = Gimp.Image.new_with_precision(70, 70, Gimp.ImageBaseType.RGB, precision)
        new_layer(image, "bg", 70, 70, 12, alpha=False)
        new_layer(image, "top", 50, 40, 13, x=9, y=11, opacity=75.0)
        save(image, name)

    # grey and indexed
    image = Gimp.Image.new(64, 48, Gimp.ImageBaseType.GRAY)
    new_layer(image, "bg", 64, 48, 14, alpha=False)
    new_layer(image, "grey top", 30, 20, 15, x=3, y=4)
    save(image, "grey.xcf")
    image = Gimp.Image.new(70, 50, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 70, 50, 16, alpha=False)
    new_layer(image, "indexed top", 40, 30, 17, x=20, y=10)
    image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 24, False, False, "")
    save(image, "indexed.xcf")

    # a non-destructive filter on a layer
    image = Gimp.Image.new(80, 60, Gimp.ImageBaseType.RGB)
    new_layer(image, "bg", 80, 60, 18, alpha=False)
    blurred = new_layer(image, "blurred", 60, 40, 19, x=10, y=10)
    flt = Gimp.DrawableFilter.new(blurred, "gegl:gaussian-blur", "Soft blur")
    config = flt.get_config()
    config.set_property("std-dev-x", 3.0)
    config.set_property("std-dev-y", 3.0)
    flt.update()
    blurred.append_filter(flt)
    save(image, "nde.xcf")
    return [n for n in ("offsets.xcf", "groups.xcf", "mask.xcf", "modes.xcf", "text.xcf", "u16-linear.xcf", "float-perceptual.xcf",
                        "half-linear.xcf", "u32-perceptual.xcf", "double-linear.xcf", "grey.xcf", "indexed.xcf", "nde.xcf")]


def describe(name):
    image = Gimp.file_load(NONE, Gio.File.new_for_path(WORK + "/" + name))
    counter = [0]

    def walk(layers):
        out = []
        for layer in layers:
            ok, x, y = layer.get_offsets()
            w, h = layer.get_width(), layer.get_height()
            entry = {"name": layer.get_name(), "x": x, "y": y, "w": w, "h": h, "visible": layer.get_visible(),
                     "opacity": layer.get_opacity(), "mode": int(layer.get_mode()), "group": layer.is_group_layer(),
                     "text": layer.is_text_layer(), "mask": None, "children": None,
                     "filters": [f.get_name() for f in (layer.get_filters() or [])]}
            index = counter[0]
            counter[0] += 1
            if layer.is_group_layer():
                entry["children"] = walk(layer.get_children())
            else:
                raw = "%s.%d.raw" % (name, index)
                data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP)
                open(WORK + "/" + raw, "wb").write(bytes(data))
                entry["raw"] = raw
            mask = layer.get_mask()
            if mask is not None:
                raw = "%s.%d.mask.raw" % (name, index)
                data = mask.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "Y u8", Gegl.AbyssPolicy.CLAMP)
                open(WORK + "/" + raw, "wb").write(bytes(data))
                entry["mask"] = raw
            out.append(entry)
        return out

    tree = walk(image.get_layers())
    info = {"size": [image.get_width(), image.get_height()], "precision": int(image.get_precision()),
            "base": int(image.get_base_type()), "layers": tree}
    open(WORK + "/" + name + ".json", "w").write(json.dumps(info))
    image.delete()


names = build() if TASK == "write" else FILES
for item in names:
    describe(item)
open(WORK + "/done.json", "w").write(json.dumps(names))
