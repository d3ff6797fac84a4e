"""The host API: the few calls into GIMP (pixels, selection, layers, progress, errors), like G'MIC-Qt's host."""

from __future__ import annotations

import struct
import types
from typing import Any, Optional

#: The GObject-introspection modules (``gi.Gimp``, ``gi.Gegl`` ...), set by :func:`load_gi` inside GIMP only.
gi: Any = None


def load_gi() -> Any:
    """Import GIMP's libraries (only ever inside GIMP) into :data:`gi` and return them."""
    global gi
    import gi as introspection

    introspection.require_version("Gimp", "3.0")
    introspection.require_version("Gegl", "0.4")
    introspection.require_version("Babl", "0.1")
    from gi.repository import Babl, Gegl, Gimp, GLib, GObject

    gi = types.SimpleNamespace(require_version=introspection.require_version, Babl=Babl, Gegl=Gegl, Gimp=Gimp, GLib=GLib, GObject=GObject)
    return gi


_COLOUR_FORMAT = "R'G'B'A double"


def make_colour(rgb: list[float]) -> Any:
    """A ``Gegl.Color`` from three floats in [0, 1]."""
    gi.Babl.init()  # Babl formats need babl; cheaper than Gegl.init(), which loads every GEGL module
    colour = gi.Gegl.Color.new("black")
    data = struct.pack("4d", float(rgb[0]), float(rgb[1]), float(rgb[2]), 1.0)
    colour.set_bytes(gi.Babl.format(_COLOUR_FORMAT), gi.GLib.Bytes.new(data))
    return colour


def read_colour(colour: Any, default: list[float]) -> list[float]:
    """Three floats in [0, 1] from a ``Gegl.Color`` (the default for an unset one)."""
    if colour is None:
        return list(default)
    red, green, blue, alpha = struct.unpack("4d", colour.get_bytes(gi.Babl.format(_COLOUR_FORMAT)).get_data())
    if alpha == 0.0:
        # GIMP 3.0.4 loses colour defaults outside the plug-in's own process: a caller
        # that leaves the argument unset sends transparent black. Our colour arguments
        # have no alpha, so a transparent colour means "not given": use the default.
        return list(default)
    return [min(max(red, 0.0), 1.0), min(max(green, 0.0), 1.0), min(max(blue, 0.0), 1.0)]


class GimpHost:
    """The few things the plug-in asks of GIMP, like G'MIC-Qt's host API.

    Read pixels and the selection, write pixels (through the shadow buffer, so
    the selection applies and the call is one undo step), add a layer, report
    progress and errors. Everything else (the worker, the dialog's plan) is
    plain Python.
    """

    def __init__(self, title: str, count: int = 1) -> None:
        self.title = title
        self.count = count
        self.index = 0
        self._last_text = ""
        self.summary: list[str] = []  # the filter's summary lines of this call (shown when it ends)

    @staticmethod
    def pixel_format(drawable: Any) -> tuple[str, int, str, str]:
        """``(babl format, channels, wire dtype, babl suffix)`` to read ``drawable`` without loss."""
        precision = drawable.get_image().get_precision()
        eight_bit = precision in (gi.Gimp.Precision.U8_NON_LINEAR, gi.Gimp.Precision.U8_PERCEPTUAL)
        suffix = " u8" if eight_bit else " float"
        gray = drawable.is_gray()
        alpha = drawable.has_alpha()
        channels = (1 if gray else 3) + (1 if alpha else 0)
        return ("Y'" if gray else "R'G'B'") + ("A" if alpha else "") + suffix, channels, "u8" if eight_bit else "f32", suffix

    @staticmethod
    def selection(drawable: Any) -> Optional[tuple[int, int, int, int]]:
        """``(x, y, width, height)`` of the selection within ``drawable`` (all of it without one), or ``None``."""
        intersects, x, y, width, height = drawable.mask_intersect()
        if not intersects or width <= 0 or height <= 0:
            return None
        return x, y, width, height

    @staticmethod
    def read(drawable: Any, region: tuple[int, int, int, int], babl_format: str, scale: float = 1.0) -> bytes:
        """Pixels of ``region`` (drawable coordinates) as raw bytes, downscaled by ``scale`` (``<= 1``)."""
        x, y, width, height = region
        if scale != 1.0:
            x, y = int(x * scale), int(y * scale)
            width, height = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
        rect = gi.Gegl.Rectangle.new(x, y, width, height)
        return bytes(drawable.get_buffer().get(rect, scale, babl_format, gi.Gegl.AbyssPolicy.CLAMP))

    @staticmethod
    def write(drawable: Any, region: tuple[int, int, int, int], babl_format: str, data: Any) -> None:
        """Write pixels into ``region`` through the shadow buffer (the selection applies; one undo step)."""
        x, y, width, height = region
        shadow = drawable.get_shadow_buffer()
        shadow.set(gi.Gegl.Rectangle.new(x, y, width, height), babl_format, bytes(data))
        shadow.flush()
        drawable.merge_shadow(True)
        drawable.update(x, y, width, height)

    @staticmethod
    def add_layer(
        image: Any, above: Any, name: str, offsets: tuple[int, int], size: tuple[int, int], babl_format: str, data: Any
    ) -> Any:
        """A new layer above the layer ``above`` (or at the top), filled with ``data`` and placed at ``offsets``."""
        width, height = size
        gray = image.get_base_type() == gi.Gimp.ImageBaseType.GRAY
        alpha = babl_format.split(" ")[0].endswith("A")
        kind = {
            (False, False): gi.Gimp.ImageType.RGB_IMAGE,
            (False, True): gi.Gimp.ImageType.RGBA_IMAGE,
            (True, False): gi.Gimp.ImageType.GRAY_IMAGE,
            (True, True): gi.Gimp.ImageType.GRAYA_IMAGE,
        }[(gray, alpha)]
        layer = gi.Gimp.Layer.new(image, name, width, height, kind, 100.0, gi.Gimp.LayerMode.NORMAL)
        is_layer = above is not None and above.is_layer()
        image.insert_layer(layer, above.get_parent() if is_layer else None, image.get_item_position(above) if is_layer else 0)
        layer.set_offsets(*offsets)
        buffer = layer.get_buffer()
        buffer.set(gi.Gegl.Rectangle.new(0, 0, width, height), babl_format, bytes(data))  # babl converts grey to RGB
        buffer.flush()
        layer.update(0, 0, width, height)
        return layer

    def progress(self, fraction: float, message: str) -> None:
        """Progress of the current drawable (of ``count``) in GIMP's progress bar, with the worker's message."""
        gi.Gimp.progress_update((self.index + min(max(fraction, 0.0), 1.0)) / self.count)
        if message and message != self._last_text:
            self._last_text = message
            gi.Gimp.progress_set_text(f"{self.title}: {message}")

    def begin(self, image: Any) -> None:
        """Start the call: GIMP's progress bar, and one undo group for everything that follows."""
        gi.Gimp.progress_init(self.title)
        image.undo_group_start()

    @staticmethod
    def end(image: Any) -> None:
        """End the call started by :meth:`begin` (also after an error)."""
        image.undo_group_end()
        gi.Gimp.progress_end()

    @staticmethod
    def interactive(run_mode: Any) -> bool:
        """Whether GIMP called the procedure from its menu (a dialog may open), not from a script."""
        return run_mode == gi.Gimp.RunMode.INTERACTIVE

    @staticmethod
    def message(text: str) -> None:
        """Show ``text`` to the user in GIMP's message area (or its error console)."""
        gi.Gimp.message(text)

    @staticmethod
    def success(procedure: Any) -> Any:
        """The procedure's return values for a finished call; the displays show its result."""
        gi.Gimp.displays_flush()
        return procedure.new_return_values(gi.Gimp.PDBStatusType.SUCCESS, gi.GLib.Error())

    @staticmethod
    def cancelled(procedure: Any) -> Any:
        """The procedure's return values when the user closed the dialog without running the filter."""
        return procedure.new_return_values(gi.Gimp.PDBStatusType.CANCEL, gi.GLib.Error())

    @staticmethod
    def error(procedure: Any, message: str) -> Any:
        """The procedure's return values for a failed call, with ``message`` shown to the user."""
        return procedure.new_return_values(
            gi.Gimp.PDBStatusType.EXECUTION_ERROR, gi.GLib.Error.new_literal(gi.Gimp.PlugIn.error_quark(), message, 0)
        )

