"""Declarations of the explorer: ``activation-maps`` and ``feature-inversion`` filters, ``explore`` and ``atlas`` commands (light: no numpy/Keras)."""

from __future__ import annotations

from neurofilters.plugin_host import CommandSpec, FilterSpec, Param, hookimpl

__all__ = ["ACTIVATION_MAPS_PARAMS", "FEATURE_INVERSION_PARAMS", "register_commands", "register_filters"]

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


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``explore`` (subcommands ``patches`` and ``similar``) and ``atlas``."""
    return [
        CommandSpec(
            name="explore",
            help="explore a network on a folder: top-activating patches of a channel, images ranked by feature similarity",
            description=(
                "explore patches MODEL LAYER CHANNEL FOLDER -o sheet.png: the positions that most activate a channel, "
                "their receptive fields cropped into a contact sheet with scores. explore similar QUERY FOLDER --layer L: "
                "the folder's images ranked by feature similarity to QUERY (features are cached)."
            ),
            configure="neurofilters.filters.explorer.commands:configure_explore",
            run="neurofilters.filters.explorer.commands:run_explore",
        ),
        CommandSpec(
            name="atlas",
            help="write a static HTML atlas of a network: layer table, channel visualisations, top-activating patches",
            configure="neurofilters.filters.explorer.commands:configure_atlas",
            run="neurofilters.filters.explorer.commands:run_atlas",
        ),
    ]
