"""The filter's dialog: essential controls first, groups in frames, advanced ones folded away, a live preview."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from . import host
from .client import WorkerClient, WorkerError
from .host import GimpHost, make_colour, read_colour
from .manifest import OUTPUT_ARGUMENT, PLUG_IN_NAME, SEED_ARGUMENT, argument_name
from .plan import (
    ADVANCED_TITLE,
    PREVIEW_SIZE,
    dialog_sections,
    given_names,
    increments,
    missing_required,
    mnemonic_labels,
    preview_status,
    widget_kind,
)
from .procedure import image_parameter_pixels, read_seed_and_mode, read_values
from .trace import log_call


class FilterDialog:
    """The filter's dialog: essential controls first, groups in frames, technical knobs folded away, a preview.

    Widgets are GIMP's property widgets bound to the procedure's config, laid
    out from :func:`dialog_sections`; labels get unique mnemonics
    (:func:`mnemonic_labels`). The preview runs the filter on a downscaled copy
    of the selection in the warm worker, in a thread of its own, so the dialog
    stays responsive; a newer request or closing the dialog cancels the old one.
    """

    def __init__(self, procedure: Any, config: Any, info: dict[str, Any], manifest: dict[str, Any], drawable: Any) -> None:
        host.gi.require_version("GimpUi", "3.0")
        host.gi.require_version("Gtk", "3.0")
        from gi.repository import GimpUi, Gtk

        self.GimpUi, self.Gtk = GimpUi, Gtk
        GimpUi.init(PLUG_IN_NAME)
        self.procedure, self.config, self.info, self.manifest, self.drawable = procedure, config, info, manifest, drawable
        self.touched: set[str] = set()
        self._by_argument = {argument_name(param["name"]): param["name"] for param in info["params"]}
        self.dialog = GimpUi.ProcedureDialog(procedure=procedure, config=config)
        self._preview_client: Optional[WorkerClient] = None
        self._preview_generation = 0
        self._layer_combos: list[tuple[Any, dict[str, Any]]] = []
        self._layers_generation = 0
        self._closed = False
        self._filling = False
        self._restore_colour_defaults()
        self._build()
        config.connect("notify", self._on_notify)
        self._check_required()
        self.load_layers()  # also warms the worker (model loaded) for the preview and the run

    def _restore_colour_defaults(self) -> None:
        """Show declared colours, not black: GIMP 3.0.4 hands a caller's unset colour over as transparent black."""
        for param in self.info["params"]:
            if param["kind"] == "colour":
                name = argument_name(param["name"])
                colour = self.config.get_property(name)
                if colour is None or read_colour(colour, [-1.0]) == [-1.0]:
                    self.config.set_property(name, make_colour(param["default"]))

    # layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        Gtk = self.Gtk
        sections = dialog_sections(self.info)
        # Mnemonics in the order a user meets the controls: the essential ones get the free letters first.
        seed_and_output = [{"name": SEED_ARGUMENT, "label": "Seed"}, {"name": OUTPUT_ARGUMENT, "label": "Output"}]
        grouped = [p for _, params in sections["groups"] for p in params]
        advanced = [p for _, params in sections["advanced"] for p in params]
        ordered = sections["essential"] + seed_and_output + grouped + [{"name": ADVANCED_TITLE, "label": ADVANCED_TITLE}] + advanced
        labels = mnemonic_labels([param.get("label") or param["name"] for param in ordered])
        self._labels = dict(zip([param["name"] for param in ordered], labels))

        left = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
        left.pack_start(self._grid(sections["essential"], extra=True), False, False, 0)
        left.pack_start(self._preview_frame(), False, False, 0)
        right = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
        for title, params in sections["groups"]:
            right.pack_start(self._frame(title, self._grid(params)), False, False, 0)
        if sections["advanced"]:
            expander = Gtk.Expander.new_with_mnemonic(self._labels[ADVANCED_TITLE])
            box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=12)
            box.set_margin_top(6)
            for title, params in sections["advanced"]:
                box.pack_start(self._frame(title, self._grid(params)), False, False, 0)
            expander.add(box)
            right.pack_start(expander, False, False, 0)
        columns = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=18)
        columns.pack_start(left, False, False, 0)
        if right.get_children():
            columns.pack_start(right, True, True, 0)
        self.dialog.get_content_area().pack_start(columns, True, True, 0)
        columns.show_all()

    def _frame(self, title: str, child: Any) -> Any:
        frame = self.GimpUi.Frame.new(title)
        frame.add(child)
        return frame

    def _grid(self, params: list[dict[str, Any]], extra: bool = False) -> Any:
        Gtk = self.Gtk
        grid = Gtk.Grid(row_spacing=4, column_spacing=8)
        rows = [(argument_name(param["name"]), param) for param in params]
        if extra:
            rows += [(SEED_ARGUMENT, {"name": SEED_ARGUMENT, "kind": "int", "minimum": 0, "maximum": None, "default": 0}),
                     (OUTPUT_ARGUMENT, {"name": OUTPUT_ARGUMENT, "kind": "output"})]
        for row, (name, param) in enumerate(rows):
            label_text = self._labels.get(param["name"], param["name"])
            widget, labelled = self._widget(name, param, label_text)
            widget.set_hexpand(True)
            if labelled:
                grid.attach(widget, 0, row, 2, 1)
                continue
            label = Gtk.Label.new_with_mnemonic(label_text)
            label.set_xalign(0.0)
            label.set_mnemonic_widget(widget)
            grid.attach(label, 0, row, 1, 1)
            widget.set_hexpand(True)
            grid.attach(widget, 1, row, 1, 1)
            help_text = param.get("help")
            if help_text:
                label.set_tooltip_text(help_text)
                widget.set_tooltip_text(help_text)
        return grid

    def _widget(self, name: str, param: dict[str, Any], label: str) -> tuple[Any, bool]:
        """The widget of one argument and whether it carries its own label."""
        GimpUi, Gtk = self.GimpUi, self.Gtk
        if param["kind"] == "output":
            return GimpUi.prop_choice_combo_box_new(self.config, name), False
        kind = widget_kind(param)
        if kind in ("slider", "spin"):
            step, page, digits = increments(param)
            if kind == "slider":
                widget = GimpUi.prop_spin_scale_new(self.config, name, step, page, digits)
                widget.set_label(label)  # the slider shows its label inside, mnemonic included
                widget.set_tooltip_text(param.get("help") or "")
                return widget, True
            return GimpUi.prop_spin_button_new(self.config, name, step, page, digits), False
        if kind == "check":
            widget = GimpUi.prop_check_button_new(self.config, name, label)
            widget.set_tooltip_text(param.get("help") or "")
            return widget, True
        if kind == "combo":
            return GimpUi.prop_choice_combo_box_new(self.config, name), False
        if kind == "drawable":  # GIMP's chooser shows the argument's label itself
            return GimpUi.prop_drawable_chooser_new(self.config, name, param.get("label") or param["name"]), True
        if kind == "file":
            return GimpUi.prop_file_chooser_button_new(self.config, name, param.get("label") or param["name"], Gtk.FileChooserAction.OPEN), False
        if kind == "colour":
            return GimpUi.prop_color_select_new(self.config, name, 64, 20, GimpUi.ColorAreaType.FLAT), False
        if kind == "layers":
            return self._layer_combo(name, param), False
        return GimpUi.prop_entry_new(self.config, name, -1), False

    # the model's layers ---------------------------------------------------------------------
    def _layer_combo(self, name: str, param: dict[str, Any]) -> Any:
        """A text field bound to the argument, with a list of the chosen model's good layers (filled from the worker)."""
        Gtk, GObject = self.Gtk, host.gi.GObject
        combo = Gtk.ComboBoxText.new_with_entry()
        if param["kind"] == "layers" and param.get("default_text"):
            combo.append_text(str(param["default_text"]))
        flags = GObject.BindingFlags.BIDIRECTIONAL | GObject.BindingFlags.SYNC_CREATE
        self.config.bind_property(
            name, combo.get_child(), "text", flags, lambda _binding, value: value or "", lambda _binding, value: value or ""
        )
        self._layer_combos.append((combo, param))
        return combo

    def _model_argument(self) -> Optional[str]:
        """The argument of the filter's first ``model`` parameter, or ``None``."""
        return next((argument_name(param["name"]) for param in self.info["params"] if param["kind"] == "model"), None)

    def load_layers(self) -> None:
        """Ask the worker (in a thread) for the chosen model's good layers and offer them in the layer fields."""
        argument = self._model_argument()
        if not self._layer_combos or argument is None:
            return
        values, _ = read_values(self.config, self.info, self.manifest)
        model = next(values[param["name"]] for param in self.info["params"] if argument_name(param["name"]) == argument)
        self._layers_generation += 1
        generation = self._layers_generation
        manifest = self.manifest

        def work() -> None:
            try:
                reply, _ = WorkerClient(manifest).request({"op": "layers", "model": model})
                layers = list(reply.get("layers") or [])
            except Exception:  # noqa: BLE001 - without a list the field stays a plain text field
                layers = []
            self._idle(lambda: generation == self._layers_generation and not self._closed and self._fill_layers(model, layers))

        threading.Thread(target=work, name="neurofilters-layers", daemon=True).start()

    def _fill_layers(self, model: str, layers: list[str]) -> None:
        log_call({"layers": model, "offered": layers})
        self._filling = True
        try:
            self._refill(model, layers)
        finally:
            self._filling = False

    def _refill(self, model: str, layers: list[str]) -> None:
        for combo, param in self._layer_combos:
            entry = combo.get_child()
            text = entry.get_text()
            combo.remove_all()
            if param["kind"] == "layers" and param.get("default_text"):
                combo.append_text(str(param["default_text"]))
            for layer in layers:
                combo.append_text(layer)
            entry.set_text(text)
            combo.set_tooltip_text(
                f"{param.get('help', '')} The list holds {model}'s recommended layers; "
                + ("type several with weights, e.g. 'a:1,b:0.5'." if param["kind"] == "layers" else "or type any layer name.")
            )

    # preview -------------------------------------------------------------------------------
    def _preview_frame(self) -> Any:
        Gtk = self.Gtk
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=6)
        self.preview_image = Gtk.Image()
        self.preview_image.set_size_request(PREVIEW_SIZE, PREVIEW_SIZE)
        row = Gtk.Box(orientation=Gtk.Orientation.HORIZONTAL, spacing=6)
        self.preview_button = Gtk.Button.new_with_mnemonic("_Preview")
        self.preview_button.set_tooltip_text("Run the filter with these settings on a downscaled copy of the selection (the dialog stays usable).")
        self.preview_button.connect("clicked", lambda _button: self.start_preview())
        self.preview_status = Gtk.ProgressBar()
        self.preview_status.set_show_text(True)
        self.preview_status.set_text("Not computed yet")
        row.pack_start(self.preview_button, False, False, 0)
        row.pack_start(self.preview_status, True, True, 0)
        box.pack_start(self.preview_image, False, False, 0)
        box.pack_start(row, False, False, 0)
        return self._frame("Preview", box)

    def start_preview(self) -> None:
        """Compute a preview of the current settings in a thread (cancelling an older one)."""
        self.cancel_preview()
        self._preview_generation += 1
        generation = self._preview_generation
        gimp = GimpHost(self.info["title"])
        try:
            region = gimp.selection(self.drawable)
            if region is None:
                raise WorkerError("The selection does not touch this layer.")
            scale = min(1.0, PREVIEW_SIZE / float(max(region[2], region[3])))
            width, height = max(1, int(round(region[2] * scale))), max(1, int(round(region[3] * scale)))
            pixels = gimp.read(self.drawable, region, "R'G'B' u8", scale)
            values, drawables = read_values(self.config, self.info, self.manifest)
            images = image_parameter_pixels(gimp, drawables, scale)
            seed, _ = read_seed_and_mode(self.config)
            given = given_names(self.info, values, self._touched_params() | set(drawables))
            client = WorkerClient(self.manifest)
        except WorkerError as error:
            self._show_status(str(error), 0.0)
            return
        self._preview_client = client
        self._show_status("Starting…", 0.0)
        log_call({"preview": self.info["name"], "status": "started", "size": [width, height], "values": values, "given": given})

        def progress(fraction: float, message: str) -> None:
            self._idle(lambda: generation == self._preview_generation and not self._closed and self._show_status(message or "Working…", fraction))

        def work() -> None:
            try:
                reply, data = client.run(self.info["name"], values, seed, width, height, 3, "u8", pixels, progress, images=images, given=given)
                outcome = (reply, bytes(data), None)
            except Exception as error:  # noqa: BLE001 - shown in the dialog, never raised in a thread
                outcome = (None, None, str(error))
            self._idle(lambda: generation == self._preview_generation and not self._closed and self._show_preview(*outcome))

        threading.Thread(target=work, name="neurofilters-preview", daemon=True).start()

    @staticmethod
    def _idle(callback: Callable[[], Any]) -> None:
        """Run ``callback`` once in GTK's main loop (the only thread that may touch widgets)."""

        def once() -> bool:
            callback()
            return False

        host.gi.GLib.idle_add(once)

    def _show_status(self, text: str, fraction: float) -> None:
        self.preview_status.set_fraction(min(max(fraction, 0.0), 1.0))
        self.preview_status.set_text(text[:120])
        self.preview_status.set_tooltip_text(text)

    def _show_preview(self, reply: Optional[dict[str, Any]], data: Optional[bytes], error: Optional[str]) -> None:
        self._preview_client = None
        log_call(
            {"preview": self.info["name"], "status": "failed" if error else "done", "error": error,
             "size": [reply["width"], reply["height"]] if reply else None}
        )
        if error is not None:
            self._show_status(error.splitlines()[0], 0.0)
            return
        from gi.repository import GdkPixbuf

        channels = reply["channels"]
        if channels not in (3, 4):
            self._show_status(f"The preview has {channels} channel(s); only colour results are shown.", 1.0)
            return
        pixbuf = GdkPixbuf.Pixbuf.new_from_bytes(
            host.gi.GLib.Bytes.new(data), GdkPixbuf.Colorspace.RGB, channels == 4, 8, reply["width"], reply["height"], reply["width"] * channels
        )
        self.preview_image.set_from_pixbuf(pixbuf)
        self._show_status(preview_status(reply), 1.0)

    def cancel_preview(self) -> None:
        """Stop a running preview (the worker stops it at its next progress report)."""
        client, self._preview_client = self._preview_client, None
        if client is not None:
            client.cancel()

    # running -------------------------------------------------------------------------------
    def _on_notify(self, _config: Any, pspec: Any) -> None:
        if self._filling:
            return  # our own refill of a layer list, not the user
        self.touched.add(pspec.get_name())
        self._check_required()
        if pspec.get_name() == self._model_argument():
            self.load_layers()

    def _check_required(self) -> None:
        """OK only once every required image has a layer; the status line says what is missing."""
        hint = missing_required(self.info, read_values(self.config, self.info, self.manifest)[1])
        self.dialog.set_response_sensitive(self.Gtk.ResponseType.OK, not hint)
        if hint:
            self._show_status(hint, 0.0)

    def _touched_params(self) -> set[str]:
        return {self._by_argument[name] for name in self.touched if name in self._by_argument}

    def run(self) -> tuple[bool, set[str]]:
        """Show the dialog until OK or Cancel.

        Returns:
            ``(accepted, touched)``: whether the user pressed OK, and the names
            of the parameters whose controls the user changed.
        """
        try:
            accepted = self.dialog.run()
        finally:
            self._closed = True
            self.cancel_preview()
            self._preview_generation += 1
            self.dialog.destroy()
        return accepted, self._touched_params()

