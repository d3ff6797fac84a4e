"""Declarations of the ``texture`` and ``style-transfer`` filters (imported when the registry is built: keep it light).

No Keras, TensorFlow or numpy here: :mod:`.synthesis` and :mod:`.style` are imported only when a filter runs.
"""

from __future__ import annotations

import os

from neurofilters.plugin_host import FilterSpec, Param, hookimpl

from ..gradients import PRECISIONS

__all__ = ["STYLE_PARAMS", "TEXTURE_PARAMS", "DEFAULT_STYLE_LAYERS", "DEFAULT_TEXTURE_LAYERS", "register_filters"]

#: DeepTextures' layers (conv1_1 and pool1-pool4) on VGG16: blocks 1-4 of the embedded backbone.
DEFAULT_TEXTURE_LAYERS = "block1_conv1:1,block1_pool:1,block2_pool:1,block3_pool:1,block4_pool:1"
#: keras-io's style layers without block 5 (HED trained it for edges): conv1 of blocks 1-4.
DEFAULT_STYLE_LAYERS = "block1_conv1:1,block2_conv1:1,block3_conv1:1,block4_conv1:1"
#: keras-io's content layer is block5_conv2; block 4's counterpart on the HED backbone.
DEFAULT_CONTENT_LAYER = "block4_conv2"

_PREVIEW_STYLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hallucinate", "preview-noise.png")
#: Iterations at the finest octave; each coarser one runs twice as many (see synthesis.octave_steps).
DEFAULT_STEPS = 8


def _steps(octave_cap: int, own: str = "") -> Param:
    """One filter's ``steps``: the schedule both filters share, the cap of its coarser octaves and a sentence of its own."""
    return Param(
        "steps",
        "int",
        DEFAULT_STEPS,
        "Optimiser iterations at the full size (L-BFGS; Adam above about 1.4 megapixels); left at its default, smaller outputs "
        "than 512 x 512 get more (x sqrt(512²/pixels), at most x4: 32 at 128 x 128); each coarser octave runs twice as many as "
        f"the next, at most {octave_cap} (or --steps if more), and an octave stops early once its loss falls by less than 0.1 % "
        f"in 5 iterations.{' ' + own if own else ''}",
        minimum=1,
        maximum=5000,
    )


#: Texture's coarser octaves run at most this many iterations (synthesis.TEXTURE_MAX_OCTAVE_STEPS; this module stays light).
_TEXTURE_OCTAVE_CAP = 32
#: Style transfer's (synthesis.MAX_OCTAVE_STEPS).
_STYLE_OCTAVE_CAP = 200

_ENGINE = (
    Param("octaves", "int", 0, "Coarse-to-fine scales, each half the size of the next (0 = automatic: halve while the smaller side stays at least 64 px, at most 4).", minimum=0, maximum=8),
    Param("model", "model", "vgg16-hed", "Network whose feature statistics are matched: the embedded VGG16 backbone (vgg16-hed) or any zoo model with --layers naming its layers."),
    Param("precision", "choice", "auto", "Arithmetic of the network: auto (bfloat16 where it is about twice as fast, float32 elsewhere), float32 or bfloat16.", choices=PRECISIONS, group="Engine", advanced=True),
    Param("optimizer", "choice", "auto", "auto: L-BFGS with pixel bounds up to about 1.4 megapixels, Adam above (L-BFGS keeps 40 float64 copies of the image).", choices=("auto", "lbfgs", "adam"), group="Engine", advanced=True),
    Param("tile_size", "int", 512, "Largest tile fed to the network; Gram statistics are summed over tiles, so memory stays bounded for any output size.", minimum=64, maximum=8192, group="Engine", advanced=True),
)

TEXTURE_PARAMS: tuple[Param, ...] = (
    Param("source", "image", None, "The texture sample to imitate: an image file or a GIMP pattern (.pat)."),
    Param("tileable", "bool", False, "Make the result wrap around seamlessly (circular statistics and padding), for use as a fill pattern."),
    Param("match_colours", "bool", True, "Give the result the sample's colours afterwards: their mean and covariance (a grey sample gives a grey result), then each channel's histogram.", label="Match colours"),
    Param("source_scale", "float", 1.0, "Scale the sample by this factor before analysis (below 1: larger texture elements relative to the sample's pixels are seen as smaller).", minimum=0.05, maximum=4.0),
    Param("layers", "layers", "auto", f"Layers whose Gram matrices are matched, with weights; auto = {DEFAULT_TEXTURE_LAYERS} on vgg16-hed (DeepTextures' conv1_1 + pool1-4).", group="Network", advanced=True),
    _steps(
        _TEXTURE_OCTAVE_CAP,
        "With the default --layers, up to 32 the finest octave matches only the three shallowest layers (a third of the cost), "
        "above 32 every layer (far lower loss per second when asking for more).",
    ),
    *_ENGINE,
)

STYLE_PARAMS: tuple[Param, ...] = (
    Param("style", "image", None, "The style image whose textures and colours are painted onto the input.", required=True),
    Param("style2", "image", None, "A second style image, blended with the first by --style2-weight.", label="Second style", group="Styles"),
    Param("style2_weight", "float", 0.5, "Share of the second style in the blend (0..1); the first gets the rest.", minimum=0.0, maximum=1.0, label="Second style share", group="Styles"),
    Param("style_scale", "float", 1.0, "Scale the style images by this factor before analysis (larger strokes below 1 ... above 1 smaller).", minimum=0.05, maximum=4.0, group="Styles"),
    Param("content_weight", "float", 1.0, "Weight of the content distance (relative squared feature error at the content layer).", minimum=0.0, maximum=1e6),
    Param("style_weight", "float", 1.0, "Weight of the style distance (relative squared Gram error, summed over style layers).", minimum=0.0, maximum=1e6),
    Param("tv_weight", "float", 0.0, "Weight of the total variation (mean squared neighbour difference) against pixel noise.", minimum=0.0, maximum=1e6, label="TV weight"),
    Param("keep_colours", "bool", False, "Keep the input's colours: only the brightness of the result comes from the transfer.", label="Keep original colours"),
    Param("start", "choice", "content", "Start the optimisation from the input (keras-io) or from noise (Gatys).", choices=("content", "noise"), group="Network", advanced=True),
    Param("style_layers", "layers", "auto", f"Style layers with weights; auto = {DEFAULT_STYLE_LAYERS} on vgg16-hed.", group="Network", advanced=True),
    Param("content_layer", "layer", "auto", f"Content layer; auto = {DEFAULT_CONTENT_LAYER} on vgg16-hed.", group="Network", advanced=True),
    _steps(_STYLE_OCTAVE_CAP),
    *_ENGINE,
)


@hookimpl
def register_filters() -> list[FilterSpec]:
    """Register ``texture`` and ``style-transfer``."""
    return [
        FilterSpec(
            name="texture",
            title="Texture synthesis",
            summary="Synthesise a new texture like a sample (Gram matrices of VGG features), any size, optionally tileable.",
            description=(
                "Starts from noise and descends on the difference between the Gram matrices of the network's "
                "activations for the result and for the sample (Gatys et al.), coarse to fine, with Gram statistics "
                "summed over tiles so any size fits in memory. The output has the input's size; the input's pixels "
                "are not used. The network sees a mirrored surround at the borders, so they look like the centre; "
                "--tileable makes a seamless pattern instead (a torus); write it as a .pat to use it in GIMP."
            ),
            category="Texture",
            params=TEXTURE_PARAMS,
            run="neurofilters.filters.texture.synthesis:run_texture",
            # Three octaves, one iteration at the full size (4, 2, 1 coarse to fine): at 256 x 170 (AVX2 cap,
            # load 7) 2.0-2.5 CPU-s and a mean relative Gram error of 0.70 (brick) where the old 3 iterations
            # in one octave took 2.9-3.2 CPU-s for 0.95 and looked like noise; the full run's elements show.
            preview_params={"steps": 1, "octaves": 3, "precision": "float32"},
        ),
        FilterSpec(
            name="style-transfer",
            title="Style transfer",
            summary="Paint the input with the style of one or two images (Gatys et al.), keeping its content.",
            description=(
                "Optimises the image so its deep features stay close to the input's at the content layer while "
                "the Gram matrices of the style layers approach those of the style image(s), blended by weight. "
                "Optionally keeps the input's colours. Coarse to fine and tiled, so large images fit in memory."
            ),
            category="Texture",
            params=STYLE_PARAMS,
            run="neurofilters.filters.texture.style:run_style_transfer",
            # The style of a quick run: the small noise PNG shipped for add-noise's preview.
            preview_params={"style": _PREVIEW_STYLE, "steps": 3, "octaves": 1, "precision": "float32"},
        ),
    ]
