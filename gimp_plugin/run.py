"""Running a filter in GIMP: the dialog when interactive, then each drawable through the worker, one undo step."""

from __future__ import annotations

from typing import Any

from .client import WorkerClient, WorkerError
from .dialog import FilterDialog
from .host import GimpHost
from .plan import given_names, missing_required
from .procedure import image_parameter_pixels, read_seed_and_mode, read_values
from .trace import log_call


def run_filter(
    procedure: Any, run_mode: Any, image: Any, drawables: Any, config: Any, info: dict[str, Any], manifest: dict[str, Any]
) -> Any:
    """Run a filter procedure: the dialog when interactive, then every selected drawable in one undo group.

    Returns:
        The procedure's return values (success, cancel, or an error with its message).
    """
    touched: set[str] = set()
    if GimpHost.interactive(run_mode):
        try:
            accepted, touched = FilterDialog(procedure, config, info, manifest, drawables[0] if drawables else None).run()
        except Exception as error:  # a bug in the dialog must still end as a GIMP error, not a crash
            return GimpHost.error(
                procedure, f"{info['title']}: the neurofilters dialog failed: {type(error).__name__}: {error}. Please report it."
            )
        if not accepted:
            return GimpHost.cancelled(procedure)
    gimp = GimpHost(info["title"], max(1, len(drawables or [])))
    try:
        if not drawables:
            raise WorkerError("No layer is selected. Select the layer to filter and try again.")
        values, chosen = read_values(config, info, manifest)
        if missing_required(info, chosen):
            raise WorkerError(missing_required(info, chosen))
        seed, new_layer = read_seed_and_mode(config)
        request = {
            "info": info,
            "values": values,
            "seed": seed,
            "given": given_names(info, values, touched | set(chosen)),
            "images": image_parameter_pixels(gimp, chosen),
            "client": WorkerClient(manifest),
        }
    except WorkerError as error:
        return gimp.error(procedure, str(error))
    gimp.begin(image)
    try:
        for index, drawable in enumerate(drawables):
            gimp.index = index
            filter_drawable(gimp, request, image, drawable, new_layer)
    except WorkerError as error:
        return gimp.error(procedure, f"{info['title']}: {error}")
    except Exception as error:  # a bug here must still end as a GIMP error, not a crash
        return gimp.error(
            procedure,
            f"{info['title']}: internal error of the neurofilters plug-in: {type(error).__name__}: {error}. "
            "Please report it with the text of this message.",
        )
    finally:
        gimp.end(image)
    result = gimp.success(procedure)
    if gimp.summary and GimpHost.interactive(run_mode):  # what the filter found, where the user looks
        gimp.message(f"{info['title']}: " + "\n".join(gimp.summary))
    return result


def filter_drawable(gimp: GimpHost, request: dict[str, Any], image: Any, drawable: Any, new_layer: bool) -> None:
    """Filter one drawable: read its selected pixels, run the worker, write the result and the extra outputs.

    Args:
        gimp: The host functions of this call.
        request: ``info``, ``values``, ``seed``, ``given``, ``images`` and the ``client``.
        image: The image.
        drawable: The drawable to filter.
        new_layer: Put the result on a new layer above instead of replacing the pixels.
    """
    info = request["info"]
    if drawable.is_group():
        raise WorkerError(f"{drawable.get_name()!r} is a layer group; select a pixel layer (or merge the group) and try again.")
    region = gimp.selection(drawable)
    if region is None:
        return  # the selection does not touch this drawable: nothing to change
    x, y, width, height = region
    in_format, channels, dtype, suffix = gimp.pixel_format(drawable)
    pixels = gimp.read(drawable, region, in_format)
    client = request["client"]
    log_call(
        {
            "filter": info["name"],
            "values": request["values"],
            "seed": request["seed"],
            "given": request["given"],
            "images": sorted(header["name"] for header, _ in request["images"]),
            "region": [x, y, width, height],
            "format": in_format,
            "drawable": drawable.get_name(),
            "socket": client.socket_path,
        }
    )
    reply, data = client.run(
        info["name"], request["values"], request["seed"], width, height, channels, dtype, pixels,
        gimp.progress, images=request["images"], given=request["given"],
    )
    out_format = ("R'G'B'A" if reply["channels"] == 4 else "R'G'B'") + suffix
    name = f"{drawable.get_name()} ({info['title']})"
    offset_x, offset_y = drawable.get_offsets()[1:] if drawable.is_layer() else (0, 0)
    top = drawable
    if (reply["width"], reply["height"]) == (width, height):
        if new_layer:
            if not drawable.is_layer():
                raise WorkerError("'As a new layer' needs a layer; a channel or mask is selected. Choose 'Replace'.")
            top = drawable.copy()
            top.set_name(name)
            image.insert_layer(top, drawable.get_parent(), image.get_item_position(drawable))
        gimp.write(top, region, out_format, data)
    else:  # a different-sized analysis (e.g. a table of activations): always a new layer
        top = gimp.add_layer(image, drawable, name, (offset_x + x, offset_y + y), (reply["width"], reply["height"]), out_format, data)
    gimp.summary.extend(line for line in reply.get("summary") or () if line not in gimp.summary)
    for output in reply["outputs"]:  # extra outputs (frames, maps): new layers above, in emission order
        output_format = {1: "Y'", 2: "Y'A", 3: "R'G'B'", 4: "R'G'B'A"}[output["channels"]] + suffix
        top = gimp.add_layer(
            image, top, f"{drawable.get_name()} ({info['title']}: {output['name']})", (offset_x + x, offset_y + y),
            (output["width"], output["height"]), output_format, output["pixels"],
        )

