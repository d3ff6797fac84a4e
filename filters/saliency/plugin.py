"""Declaration of the ``saliency`` filter and the ``saliency-check`` command (imported when the registry is built: keep it light).

No Keras, TensorFlow or numpy here: the engine in :mod:`neurofilters.filters.saliency.engine`
is imported only when the filter runs.
"""

from __future__ import annotations

from neurofilters.plugin_host import CommandSpec, FilterSpec, Param, hookimpl

__all__ = ["CAM_METHODS", "CHECK_PARAMS", "COLORMAPS", "METHODS", "PARAMS", "PIXEL_METHODS", "register_commands", "register_filters", "saliency_spec"]

#: Every method, in the order of the docs (pixel-gradient family, then CAM family).
METHODS = (
    "guided-backprop",
    "gradient",
    "smoothgrad",
    "integrated-gradients",
    "grad-cam",
    "grad-cam++",
    "guided-grad-cam",
)
#: Methods that read a layer's activations and gradients (``--layer``).
CAM_METHODS = ("grad-cam", "grad-cam++", "guided-grad-cam")
#: Methods whose map is a per-pixel gradient (sparse, sharp).
PIXEL_METHODS = ("guided-backprop", "gradient", "smoothgrad", "integrated-gradients")
COLORMAPS = ("turbo", "jet", "inferno", "viridis", "grey")

PARAMS: tuple[Param, ...] = (
    Param("method", "choice", "grad-cam", "What to compute: a per-pixel gradient map (guided-backprop, gradient, smoothgrad, integrated-gradients) or a class activation map of a layer (grad-cam, grad-cam++), or both multiplied (guided-grad-cam).", choices=METHODS),
    Param("model", "model", "lite0", "Network to explain: an embedded model (lite0; vgg16-hed has no classes, use a channel or neuron target), a Keras Applications name or a .keras file."),
    Param("class_", "class_label", "top-1", "Class to explain: 'top-1' (the network's best guess), 'top-2' ... 'top-5', a class id (282) or a name ('tiger cat'). Only for the class target.", label="Class", group="Target"),
    Param("target", "choice", "class", "Explain a class score, the mean of one channel of a layer, or one neuron (that channel at one position; its map shows the neuron's receptive field). On a fully connected layer both explain one unit, which sees the whole image.", choices=("class", "channel", "neuron"), group="Target"),
    Param("target_layer", "layer", "auto", "Layer of the channel or neuron target: convolutional, or fully connected (a Dense layer: a hidden one, the logits, VGG's fc1/fc2); 'auto' is the last convolutional block.", group="Target"),
    Param("channel", "int", 0, "Channel of the target layer (its unit, for a fully connected layer) for the channel and neuron targets.", minimum=0, group="Target"),
    Param("neuron_x", "float", 0.5, "Horizontal position of the neuron, as a fraction of the image width.", label="Neuron x", minimum=0.0, maximum=1.0, group="Target", advanced=True),
    Param("neuron_y", "float", 0.5, "Vertical position of the neuron, as a fraction of the image height.", label="Neuron y", minimum=0.0, maximum=1.0, group="Target", advanced=True),
    Param("layer", "layer", "auto", "Layer whose activations the CAM methods weigh; 'auto' is the last convolutional block (Lite0: head_act).", label="CAM layer", group="CAM"),
    Param("samples", "int", 32, "SmoothGrad: number of noisy copies averaged.", minimum=1, maximum=1000, group="SmoothGrad"),
    Param("noise", "float", 0.15, "SmoothGrad: noise standard deviation as a fraction of the image's value range (0.1-0.2 works best).", minimum=0.0, maximum=1.0, group="SmoothGrad"),
    Param("steps", "int", 32, "Integrated gradients: points on the path from the baseline to the image.", minimum=1, maximum=1000, group="Integrated gradients"),
    Param("baseline", "choice", "black", "Integrated gradients: the image the path starts from: black, mid grey, white, or a heavily blurred copy of the image.", choices=("black", "grey", "white", "blur"), group="Integrated gradients"),
    Param("display", "choice", "heatmap", "Result: the map as a grey image (white = salient), a colour heat map blended over the photo, or a black-and-white mask of the most salient area.", choices=("heatmap", "grey", "mask")),
    Param("colormap", "choice", "turbo", "Colours of the heat map, from low to high saliency.", choices=COLORMAPS, group="Display"),
    Param("opacity", "float", 0.5, "Heat map opacity over the photo (0 = photo only, 1 = heat map only).", minimum=0.0, maximum=1.0, group="Display"),
    Param("mask_coverage", "float", 0.25, "Mask: share of the image the mask covers (the most salient pixels).", minimum=0.01, maximum=0.99, group="Display"),
    Param("smoothing", "float", 0.0, "Blur of the map before display, in percent of the image diagonal (0 = none; pixel-gradient maps read better with 0.5-1; masks of them are always blurred a little).", minimum=0.0, maximum=10.0, group="Display", advanced=True),
    Param("guided_relu6", "choice", "active", "Guided backprop through ReLU6 units (Lite0): 'active' passes positive gradients wherever the unit is on, saturated or not; 'unsaturated' also blocks them where the unit is clipped at 6 (its true derivative).", choices=("active", "unsaturated"), label="Guided ReLU6 rule", group="Engine", advanced=True),
    Param("batch_size", "int", 16, "Noisy copies or path points differentiated per network call (memory vs speed).", minimum=1, maximum=256, group="Engine", advanced=True),
)


def saliency_spec() -> FilterSpec:
    """The ``saliency`` filter declaration."""
    return FilterSpec(
        name="saliency",
        title="Saliency map",
        summary="Show which pixels made the network say what it sees (guided backprop, gradients, Grad-CAM ...).",
        description=(
            "Explains a classifier's decision (a class, or a channel or neuron of any layer) with one of "
            "seven methods: guided backpropagation, the plain gradient, SmoothGrad, integrated gradients, "
            "Grad-CAM, Grad-CAM++ and guided Grad-CAM. The network runs at its own resolution; the map "
            "comes back at the image's size as a grey map, a heat map over the photo or a mask, and the "
            "grey map is also written as an extra output ('saliency'). The model is never modified."
        ),
        category="Saliency",
        params=PARAMS,
        run="neurofilters.filters.saliency.engine:run",
        output="layer",
        preview_params={"method": "grad-cam", "display": "heatmap"},
    )


@hookimpl
def register_filters() -> list[FilterSpec]:
    """Register the ``saliency`` filter."""
    return [saliency_spec()]


#: ``neurofilters saliency-check``'s parameters.
CHECK_PARAMS: tuple[Param, ...] = (
    Param("model", "model", None, "classifier model (see 'neurofilters models') or a .keras file", positional=True),
    Param("image", "string", None, "input image", positional=True),
    Param("class_", "string", "top-1", "class to explain: top-1, top-N, an id or a name", metavar="CLASS"),
    Param("methods", "choice", METHODS, "methods to check", choices=METHODS, nargs=",", metavar="METHOD,..."),
    Param("layer", "string", "auto", "CAM layer (auto: the last convolutional block)", metavar="LAYER"),
    Param("levels", "int", 0, "randomise only the top N groups of layers (0: all)", minimum=0, maximum=1000),
    Param("samples", "int", 16, "SmoothGrad samples", minimum=1, maximum=1024),
    Param("steps", "int", 16, "integrated-gradients steps", minimum=1, maximum=1024),
    Param("seed", "int", 0, "seed of the random weights and noise", minimum=0, maximum=2**63 - 1),
    Param("figure", "string", "", "also write the maps as an image grid to this file (.png, .jpg)", metavar="FILE"),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """Register ``neurofilters saliency-check``."""
    return [
        CommandSpec(
            name="saliency-check",
            help="Sanity-check saliency methods on a model: randomise its layers from the top down and measure how the maps change.",
            params=CHECK_PARAMS,
            run="neurofilters.filters.saliency.commands:compute_check",
            render="neurofilters.filters.saliency.commands:render_check",
            description=(
                "Cascading model-parameter randomisation (Adebayo et al. 2018): the layers with weights are "
                "re-initialised one after another from the logits down, and each method's map is compared "
                "with the original one (Spearman rank correlation). A method whose map does not change when "
                "the weights it explains are destroyed does not explain the model."
            ),
        )
    ]
