"""Declarations of the explorer: ``activation-maps`` and ``feature-inversion`` filters, ``explore`` and ``atlas`` commands (light: no numpy/Keras)."""

from __future__ import annotations

from neurofilters.plugin_host import CommandSpec, FilterSpec, Param, hookimpl

__all__ = [
    "ACTIVATION_MAPS_PARAMS", "ATLAS_PARAMS", "FEATURE_INVERSION_PARAMS", "PATCHES_PARAMS", "SIMILAR_PARAMS", "register_commands",
    "register_filters",
]

_COLORMAPS = ("viridis", "magma", "inferno", "gray")  # render.COLORMAPS (kept light here)

ACTIVATION_MAPS_PARAMS: tuple[Param, ...] = (
    Param("model", "model", "lite0", "Network whose feature maps are shown."),
    Param("layer", "layer", "block3", "Layer to show (raw name or alias, see 'neurofilters layers MODEL'): early layers respond to colours and edges, later ones to textures and parts."),
    Param("display", "choice", "grid", "grid: the chosen channels' maps side by side, each labelled with its number and mean activation; overlay: one channel's map blended over the photo.", choices=("grid", "overlay")),
    Param("select", "choice", "top", "grid: which channels: the most active (by mean activation), all of them, or a list.", choices=("top", "all", "list"), group="Channels"),
    Param("count", "int", 16, "select=top: how many channels.", minimum=1, maximum=4096, group="Channels"),
    Param("channels", "string", "0-15", "select=list: channel numbers and ranges, e.g. '3,17,40-43'.", group="Channels"),
    Param("channel", "int", -1, "overlay: the channel to blend over the photo (-1: the one whose map varies most over the image).", minimum=-1, group="Channels"),
    Param("normalize", "choice", "channel", "grid: scale each map by its own range (shapes stand out) or all maps by one shared range (strengths compare).", choices=("channel", "shared"), label="Normalisation"),
    Param("colormap", "choice", "viridis", "Colours of the maps (low to high).", choices=_COLORMAPS),
    Param("opacity", "float", 0.75, "overlay: opacity of the map where the channel is most active.", minimum=0.0, maximum=1.0),
    Param("work_size", "int", 224, "The longer side the image is resized to before the network (224: the scale it was trained at; 0: as it is). A network with a fixed input size (a .keras built on Input(shape=(64, 64, 3))) takes the whole image resized to that size instead.", minimum=0, maximum=2048, advanced=True),
    Param("cell_size", "int", 96, "grid: side of each map in pixels (cells are shown as blocks, one per position).", minimum=16, maximum=1024, advanced=True),
    Param("labels", "bool", True, "grid: write the channel number and mean activation under each map.", advanced=True),
)

FEATURE_INVERSION_PARAMS: tuple[Param, ...] = (
    Param("model", "model", "lite0", "Network whose features are inverted."),
    Param("layer", "layer", "block3", "Layer whose activations the image is rebuilt from: shallow layers keep nearly everything, deep ones keep what matters for recognition."),
    Param("steps", "int", 200, "Optimisation steps (Adam on the spectral image).", minimum=1, maximum=5000),
    Param("work_size", "int", 160, "The longer side the image is rebuilt at (the result is resized to the input's size). A network with a fixed input size takes the whole image resized to that size instead.", minimum=32, maximum=1024),
    Param("tv_weight", "float", 0.02, "Total-variation prior: higher values give smoother reconstructions.", minimum=0.0, maximum=10.0, label="TV weight", advanced=True),
    Param("learning_rate", "float", 0.05, "Adam's step on the spectrum.", minimum=1e-4, maximum=1.0, advanced=True),
)


@hookimpl
def register_filters() -> list[FilterSpec]:
    """``activation-maps`` and ``feature-inversion``."""
    return [
        FilterSpec(
            name="activation-maps",
            title="Activation maps",
            summary="Show what one layer of a network responds to: its feature maps as a labelled grid, or one map over the photo.",
            description=(
                "Runs the image through the network up to a layer and draws the chosen channels' feature maps "
                "(all, the most active, or a list; normalised per channel or shared) as a labelled grid, or "
                "blends one channel's map over the photo, each position placed at the centre of its receptive field."
            ),
            category="Explore",
            params=ACTIVATION_MAPS_PARAMS,
            run="neurofilters.filters.explorer.maps:run_activation_maps",
            output="layer",
            preview_params={"count": 4, "cell_size": 24, "work_size": 64},
        ),
        FilterSpec(
            name="feature-inversion",
            title="Feature inversion",
            summary="Rebuild the photo from one layer's activations, to show what that layer keeps.",
            description=(
                "Starts from noise in a spectral, colour-decorrelated parameterisation and optimises it so the "
                "layer's activations match the photo's, with a total-variation prior; reports the relative "
                "feature and pixel errors of the reconstruction."
            ),
            category="Explore",
            params=FEATURE_INVERSION_PARAMS,
            run="neurofilters.filters.explorer.inversion:run_feature_inversion",
            output="layer",
            preview_params={"steps": 2, "work_size": 48},
        ),
    ]


#: ``neurofilters explore patches``' parameters.
PATCHES_PARAMS: tuple[Param, ...] = (
    Param("model", "model", None, "model name (see 'neurofilters models')", positional=True),
    Param("layer", "string", None, "layer name or alias (see 'neurofilters layers MODEL')", positional=True),
    Param("channel", "int", None, "channel number", positional=True, minimum=0, maximum=2**31 - 1),
    Param("folder", "string", None, "folder of images (searched recursively)", positional=True),
    Param("output", "string", None, "contact sheet to write (.png, .jpg, ...)", required=True, short="-o", metavar="FILE"),
    Param("top", "int", 16, "number of patches", short="-k", minimum=1, maximum=1000),
    Param("per_image", "int", 1, "most patches taken from one image", minimum=1, maximum=1000),
    Param("size", "int", 224, "longer side the images are resized to before the network", minimum=32, maximum=2048),
    Param("tile", "int", 128, "side of each patch on the sheet in pixels", minimum=16, maximum=1024),
    Param("batch_size", "int", 16, "images per forward pass", minimum=1, maximum=256),
    Param("maps", "bool", False, "beside each patch, the unit's guided-backprop map at that position, on the same resized "
          "image and cropped to the same field"),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)

#: ``neurofilters explore similar``' parameters.
SIMILAR_PARAMS: tuple[Param, ...] = (
    Param("query", "string", None, "query image", positional=True),
    Param("folder", "string", None, "folder of images (searched recursively)", positional=True),
    Param("layer", "string", None, "layer name or alias: convolutional or fully connected", required=True, metavar="LAYER"),
    Param("model", "model", "lite0", "model"),
    Param("top", "int", 10, "number of results printed", minimum=1, maximum=1000),
    Param("size", "int", 224, "longer side the images are resized to", minimum=32, maximum=2048),
    Param("output", "string", None, "also write the query and its best matches as a contact sheet", short="-o", metavar="FILE"),
    Param("no_cache", "bool", False, "neither read nor write the feature cache"),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)

#: ``neurofilters atlas``' parameters.
ATLAS_PARAMS: tuple[Param, ...] = (
    Param("model", "model", None, "model name (see 'neurofilters models')", positional=True),
    Param("output", "string", None, "folder to write the site into (index.html and images)", required=True, short="-o",
          metavar="DIR"),
    Param("layers", "string", None, "layers to visualise (default: three dream layers of the model)", nargs=",",
          metavar="LAYER,..."),
    Param("channels", "int", 16, "channels per layer (the first N)", minimum=1, maximum=4096),
    Param("images", "string", None, "folder of images: each channel's top-activating patches are added", metavar="FOLDER"),
    Param("steps", "int", 96, "optimisation steps per channel visualisation", minimum=1, maximum=10_000),
    Param("size", "int", 112, "side of each channel visualisation in pixels", minimum=32, maximum=1024),
    Param("patches", "int", 6, "top-activating patches per channel", minimum=1, maximum=64),
    Param("maps", "bool", False, "with --images: beside each patch, the unit's guided-backprop map there (one backward pass per patch)"),
    Param("seed", "int", 0, "seed of the visualisations", minimum=0, maximum=2**63 - 1),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``explore`` (actions ``patches`` and ``similar``) and ``atlas``."""
    return [
        CommandSpec(
            name="explore",
            help="explore a network on a folder: top-activating patches of a channel, images ranked by feature similarity",
            description=(
                "explore patches MODEL LAYER CHANNEL FOLDER -o sheet.png: the positions that most activate a channel, "
                "their receptive fields cropped into a contact sheet with scores. explore similar QUERY FOLDER --layer L: "
                "the folder's images ranked by feature similarity to QUERY (features are cached)."
            ),
            subcommands=(
                CommandSpec(
                    name="patches",
                    help="the k positions of a folder's images that most activate a channel, as a contact sheet",
                    description="Crops the exact receptive field of each of the k most active positions of CHANNEL over "
                    "FOLDER into a contact sheet with scores.",
                    params=PATCHES_PARAMS,
                    run="neurofilters.filters.explorer.patches:patches_command",
                    render="neurofilters.filters.explorer.patches:render_patches",
                ),
                CommandSpec(
                    name="similar",
                    help="rank a folder's images by feature similarity to a query image",
                    description=(
                        "Ranks FOLDER's images by the cosine similarity of their features at --layer to QUERY's: early "
                        "layers match colour and texture, late ones content; a fully connected layer (a hidden Dense "
                        "layer, the logits, VGG's fc1/fc2) compares the whole-image vectors of its units. Features are "
                        "cached, so later queries on the folder are fast."
                    ),
                    params=SIMILAR_PARAMS,
                    run="neurofilters.filters.explorer.similar:similar_command",
                    render="neurofilters.filters.explorer.similar:render_similar",
                ),
            ),
        ),
        CommandSpec(
            name="atlas",
            help="write a static HTML atlas of a network: layer table, channel visualisations, top-activating patches",
            params=ATLAS_PARAMS,
            run="neurofilters.filters.explorer.atlas:atlas_command",
            render="neurofilters.filters.explorer.atlas:render_atlas",
        ),
    ]
