"""Batch code run inside GIMP 3 (``python-fu-eval``) by the GIMP tests and the benchmark.

Never imported: ``gimp_session.batch_code(job)`` returns this file's source
with a ``JOB`` (a JSON job description) prepended, and ``gimp-console-3.0``
runs it.
Paths in a job are paths inside the chroot. The job is a list of steps, done
in order; each adds an entry to the report written as JSON to ``JOB["report"]``:

- ``{"do": "procedures"}``: every ``neurofilters-*`` procedure with its menu
  paths and arguments (name, type, default, bounds, choices).
- ``{"do": "image", "pixels": PATH, "width", "height", "format", "type",
  "precision"}``: a new image with one layer filled from raw pixels
  (``format`` a babl format such as ``"R'G'B'A u8"``), or ``{"do": "image",
  "load": PATH}`` to load a file with GIMP's own loaders.
- ``{"do": "layer", "name", "pixels", "width", "height", "format", "type"}``: one more
  layer at the bottom of the image (the selected layer stays selected).
- ``{"do": "select", "x", "y", "width", "height", "feather"}``: a rectangular selection.
- ``{"do": "run", "procedure", "args": {...}}``: run a procedure on the image's
  selected layer. Colours are ``{"colour": [r, g, b]}``, files ``{"file": PATH}``, layers ``{"layer": NAME}``.
  Reports status, error message and seconds.
- ``{"do": "dump", "prefix": PATH, "format"}``: every layer's pixels to
  ``PREFIX-<index>.raw`` with its name, size and offsets.
- ``{"do": "ping", "plugin_dir": PATH}``: the worker's status, through the
  plug-in's own client.
- ``{"do": "signal", "plugin_dir": PATH, "signal": "SIGSTOP"}``: send a signal
  to the worker (its pid from a ping), e.g. to freeze it.
"""

import json as _json
import os as _os
import signal as _signal
import struct as _struct
import sys as _sys
import time as _time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, Gio, GLib  # noqa: E402

_job = _json.loads(JOB)  # noqa: F821 - prepended by batch_code()
_report = {"steps": []}
_image = None
_pdb = Gimp.get_pdb()


def _describe_argument(spec):
    entry = {"name": spec.get_name(), "type": type(spec).__name__, "nick": spec.get_nick(), "blurb": spec.get_blurb()}
    default = spec.get_default_value()
    if isinstance(spec, Gimp.ParamChoice):
        choice = Gimp.param_spec_choice_get_choice(spec)
        entry["choices"] = list(choice.list_nicks())
        entry["labels"] = [choice.get_label(nick) for nick in entry["choices"]]
        entry["default"] = Gimp.param_spec_choice_get_default(spec)
    elif hasattr(spec, "minimum"):
        entry["minimum"] = spec.minimum
        entry["maximum"] = spec.maximum
        entry["default"] = default
    elif isinstance(default, (bool, int, float, str)) or default is None:
        entry["default"] = default
    if isinstance(spec, Gimp.ParamColor):
        default = Gimp.param_spec_object_get_default(spec)
        entry["default"] = list(_struct.unpack("4d", default.get_bytes(Babl.format("R'G'B'A double")).get_data()))[:3]
    return entry


def _procedures(step):
    names = _pdb.query_procedures("^neurofilters-.*", "", "", "", "", "", "", "")
    result = {}
    for name in names:
        procedure = _pdb.lookup_procedure(name)
        result[name] = {
            "menu_paths": list(procedure.get_menu_paths()),
            "menu_label": procedure.get_menu_label(),
            "image_types": procedure.get_image_types(),
            "blurb": procedure.get_blurb(),
            "arguments": [_describe_argument(spec) for spec in procedure.get_arguments()],
        }
    return {"procedures": result}


def _new_image(step):
    global _image
    if "load" in step:
        _image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(step["load"]))
        return {"layers": len(_image.get_layers())}
    base = getattr(Gimp.ImageBaseType, step.get("base", "RGB"))
    precision = getattr(Gimp.Precision, step.get("precision", "U8_NON_LINEAR"))
    width, height = step["width"], step["height"]
    _image = Gimp.Image.new_with_precision(width, height, base, precision)
    layer = Gimp.Layer.new(
        _image, "Background", width, height, getattr(Gimp.ImageType, step["type"]), 100.0, Gimp.LayerMode.NORMAL
    )
    _image.insert_layer(layer, None, 0)
    data = open(step["pixels"], "rb").read()
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), step["format"], data)
    buffer.flush()
    _image.set_selected_layers([layer])
    return {"layers": 1}


def _add_layer(step):
    selected = _image.get_selected_layers()
    layer = Gimp.Layer.new(
        _image, step["name"], step["width"], step["height"], getattr(Gimp.ImageType, step["type"]), 100.0, Gimp.LayerMode.NORMAL
    )
    _image.insert_layer(layer, None, len(_image.get_layers()))
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, step["width"], step["height"]), step["format"], open(step["pixels"], "rb").read())
    buffer.flush()
    _image.set_selected_layers(selected)
    return {"layers": len(_image.get_layers())}


def _select(step):
    _image.select_rectangle(Gimp.ChannelOps.REPLACE, step["x"], step["y"], step["width"], step["height"])
    if step.get("feather"):
        Gimp.Selection.feather(_image, step["feather"])
    return {}


def _value(raw):
    if isinstance(raw, dict) and "colour" in raw:
        colour = Gegl.Color.new("black")
        red, green, blue = raw["colour"]
        colour.set_bytes(
            Babl.format("R'G'B'A double"), GLib.Bytes.new(_struct.pack("4d", red, green, blue, 1.0))
        )
        return colour
    if isinstance(raw, dict) and "layer" in raw:
        return next(layer for layer in _image.get_layers() if layer.get_name() == raw["layer"])
    if isinstance(raw, dict) and "file" in raw:
        return Gio.File.new_for_path(raw["file"]) if raw["file"] else None
    return raw


def _run(step):
    procedure = _pdb.lookup_procedure(step["procedure"])
    if procedure is None:
        return {"status": "MISSING"}
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", _image)
    layers = _image.get_selected_layers()
    config.set_core_object_array("drawables", layers)
    for name, raw in step.get("args", {}).items():
        config.set_property(name, _value(raw))
    started = _time.perf_counter()
    result = procedure.run(config)
    seconds = _time.perf_counter() - started
    status = result.index(0)
    entry = {"status": status.value_nick.upper().replace("-", "_"), "seconds": seconds}
    if status != Gimp.PDBStatusType.SUCCESS:
        entry["error"] = _pdb.get_last_error()
    entry["layers"] = len(_image.get_layers())
    return entry


def _dump(step):
    layers = []
    for index, layer in enumerate(_image.get_layers()):
        width, height = layer.get_width(), layer.get_height()
        data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, width, height), 1.0, step["format"], Gegl.AbyssPolicy.CLAMP)
        path = f"{step['prefix']}-{index}.raw"
        with open(path, "wb") as handle:
            handle.write(bytes(data))
        layers.append(
            {"name": layer.get_name(), "width": width, "height": height, "offsets": list(layer.get_offsets()[1:]), "path": path}
        )
    return {"layers": layers}


def _ping(step):
    _sys.path.insert(0, step["plugin_dir"])
    import neurofilters as entry  # the installed entry file, as a module; it loads the modules beside it

    client = entry.load_module("client").WorkerClient(entry.load_module("manifest").load_manifest(step["plugin_dir"]))
    return {"status": client.ping()}


def _send_signal(step):
    pid = _ping(step)["status"]["pid"]
    _os.kill(pid, getattr(_signal, step["signal"]))
    return {"pid": pid}


_ACTIONS = {
    "procedures": _procedures,
    "image": _new_image,
    "layer": _add_layer,
    "select": _select,
    "run": _run,
    "dump": _dump,
    "ping": _ping,
    "signal": _send_signal,
}

try:
    for _step in _job["steps"]:
        _entry = {"do": _step["do"]}
        _entry.update(_ACTIONS[_step["do"]](_step))
        _report["steps"].append(_entry)
finally:
    if _image is not None:
        _image.delete()
    with open(_job["report"], "w") as _handle:
        _json.dump(_report, _handle)
