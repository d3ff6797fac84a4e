"""Declaration of the ``deepdream`` filter (imported when the registry is built: keep it light).

No Keras, TensorFlow or numpy here: the engine in :mod:`neurofilters.filters.deepdream.engine`
is imported only when the filter runs.
"""

from __future__ import annotations

from neurofilters.plugin_host import FilterSpec, Param, hookimpl

from ..gradients import PRECISIONS, RELU6_MODES

__all__ = ["MODEL_PRESETS", "PARAMS", "PRESETS", "register_filters", "deepdream_spec"]

#: Named settings (the spec's ``presets``). The host fills a preset into the parameters
#: the user did not set; anything set explicitly wins over the preset.
PRESETS: dict[str, dict[str, object]] = {
    # The tuned settings of the chosen model (see MODEL_PRESETS); Lite0's are the defaults.
    "auto": {},
    "none": {},
    # TensorFlow's DeepDream tutorial: InceptionV3 mixed3 + mixed5, mean activation,
    # gradient / std, step 0.01 in [-1, 1] (= 0.005 in [0, 1]), clip, octaves
    # range(-2, 3) x 1.3 without detail re-injection, 512 px tiles rolled randomly.
    "tf-tutorial": {
        "model": "inception-v3",
        "layers": "mixed3:1,mixed5:1",
        "loss": "mean",
        "normalize": "std",
        "step_size": 0.005,
        "steps": 100,
        "octaves": 5,
        "octave_scale": 1.3,
        "upscale_octaves": 2,
        "detail": False,
        "jitter": 512,
        "tile_size": 512,
        "smoothing": "none",
        "chroma": 1.0,
        "clip": True,
    },
    # The Keras deep_dream example: mixed4..mixed7 weighted 1, 1.5, 2, 2.5, sum of squares
    # without a 2-pixel border / size, gradient / mean|g|, step 0.01 in [-1, 1],
    # 3 octaves x 1.4, 20 iterations, stop at loss 15, lost detail re-injected.
    "keras-example": {
        "model": "inception-v3",
        "layers": "mixed4:1,mixed5:1.5,mixed6:2,mixed7:2.5",
        "loss": "mean-square",
        "normalize": "mean-abs",
        "step_size": 0.005,
        "steps": 20,
        "octaves": 3,
        "octave_scale": 1.4,
        "upscale_octaves": 0,
        "detail": True,
        "loss_ceiling": 15.0,
        "jitter": 0,
        "smoothing": "none",
        "chroma": 1.0,
        "clip": False,
    },
    # Google's original notebook schedule (step 1.5 / 255 with mean|g|, jitter 32,
    # 10 iterations, 4 octaves x 1.4, detail carried) on the embedded Lite0.
    "google-notebook": {
        "model": "lite0",
        "layers": "auto",
        "loss": "mean",
        "normalize": "mean-abs",
        "step_size": 1.5 / 255.0,
        "steps": 10,
        "octaves": 4,
        "octave_scale": 1.4,
        "upscale_octaves": 0,
        "detail": True,
        "jitter": 32,
        "smoothing": "none",
        "chroma": 1.0,
    },
    # The classic VGG16 look on the embedded backbone: block3/block4 activations, mean |g|
    # steps, no smoothing, octaves from the image size. Six steps of 0.009 travel as far as
    # Google's notebook's ten of 1.5/255 at 60 % of the cost (a 1-megapixel dream in about a
    # minute on a 2-core CPU; docs/make_deepdream_defaults_sheet.py compares them). This
    # backbone's gradient pushes colours toward flat magenta/green, so the colour part of
    # each step is damped.
    "vgg16-classic": {
        "model": "vgg16-hed",
        "layers": "auto",
        "loss": "mean-square",
        "normalize": "mean-abs",
        "step_size": 0.009,
        "steps": 6,
        "octaves": 0,
        "octave_scale": 1.4,
        "detail": True,
        "jitter": 32,
        "smoothing": "none",
        "chroma": 0.15,
    },
}

#: What ``preset="auto"`` means for each model (the spec's ``model_presets``; models not listed: the declared defaults).
MODEL_PRESETS: dict[str, str] = {"vgg16-hed": "vgg16-classic"}

PARAMS: tuple[Param, ...] = (
    Param("preset", "choice", "auto", "Named settings; they change only the parameters you did not set yourself. auto: tuned for the chosen model (vgg16-classic for vgg16-hed); none: the plain defaults; tf-tutorial, keras-example: InceptionV3 (needs its downloaded weights).", choices=tuple(PRESETS)),
    Param("model", "model", "lite0", "Network to dream with: an embedded model (lite0, vgg16-hed), inception-v3 (downloaded weights) or a .keras file."),
    Param("layers", "layers", "auto", "Layers to amplify with weights, e.g. 'block5_expand_act:1,block10_expand_act:1'; 'auto' uses the model's recommended layers."),
    Param("objective", "choice", "layer", "What to amplify: whole layers, one channel of each layer, or one neuron (that channel at the image centre).", choices=("layer", "channel", "neuron"), group="Objective"),
    Param("channel", "int", 0, "Channel index for the channel and neuron objectives.", minimum=0, group="Objective"),
    Param("loss", "choice", "mean-square", "Loss form: mean activation (TF tutorial) or mean squared activation without a 2-pixel border (Keras example).", choices=("mean", "mean-square"), group="Objective", advanced=True),
    Param("relu6", "choice", "unbounded", "ReLU6 units (Lite0) saturate at 6: dream through a copy with plain ReLUs (unbounded), keep them but pass gradients through saturated units (pass-gradient), or keep them as they are (keep).", choices=RELU6_MODES, label="ReLU6 units", group="Engine", advanced=True),
    Param("precision", "choice", "auto", "Arithmetic of the network. auto: bfloat16 where it is about twice as fast (VGG16 on CPUs with AVX512_BF16 or AMX; its gradients agree with float32 to a cosine above 0.99), float32 elsewhere. float32 or bfloat16 force one.", choices=PRECISIONS, group="Engine", advanced=True),
    Param("guide", "image", None, "Guide image for a controlled dream: each position is pulled toward the best-matching feature of this image (replaces the objective).", label="Guide image", group="Objective"),
    Param("octaves", "int", 0, "Number of scales (octaves) the image is dreamed at, smallest first; 0 = from the image size (2 at 300 px, 4 at 1000 px, 6 at 3000 px on the longer side), so patterns neither swallow small pictures nor vanish in large ones.", minimum=0, maximum=12),
    Param("octave_scale", "float", 1.4, "Size ratio between neighbouring octaves.", minimum=1.05, maximum=3.0, group="Octaves"),
    Param("upscale_octaves", "int", 0, "How many of the octaves are larger than the image (the TF tutorial uses 2 with scale 1.3).", minimum=0, maximum=4, group="Octaves", advanced=True),
    Param("detail", "bool", True, "Re-inject the dreamed detail when moving to the next octave (Google, Keras) instead of resizing the dreamed image (TF tutorial).", group="Octaves", advanced=True),
    Param("steps", "int", 8, "Gradient-ascent steps per octave.", minimum=1, maximum=1000),
    Param("step_size", "float", 0.015, "Step length in pixel units (image range 0..1) after gradient normalisation.", minimum=1e-5, maximum=1.0),
    Param("normalize", "choice", "std", "Gradient normalisation before the step: divide by its standard deviation (TF tutorial) or by its mean absolute value (Google, Keras).", choices=("std", "mean-abs"), group="Steps", advanced=True),
    Param("jitter", "int", 32, "Random roll of the image before each step, up to this many pixels (0 = none).", minimum=0, maximum=4096, group="Steps", advanced=True),
    Param("smoothing", "choice", "gaussian", "Gradient smoothing: a light Gaussian blur against pixel noise, or Laplacian-pyramid normalisation for larger, smoother structures.", choices=("none", "gaussian", "laplacian"), group="Steps", advanced=True),
    Param("chroma", "float", 0.3, "How much the dream may change colours: 1 keeps the network's colour gradient, 0 dreams in brightness only; lower values avoid flat magenta/green casts.", minimum=0.0, maximum=1.0),
    Param("smoothing_sigma", "float", 0.5, "Gaussian smoothing radius (standard deviation) in pixels.", minimum=0.0, maximum=32.0, group="Steps", advanced=True),
    Param("loss_ceiling", "float", 0.0, "Stop an octave early once the loss exceeds this value (0 = never; the Keras example uses 15).", minimum=0.0, group="Steps", advanced=True),
    Param("clip", "bool", True, "Clip pixels to the valid range after every step.", group="Steps", advanced=True),
    Param("mask", "image", None, "Greyscale image: dream where it is white, keep the image where it is black (its alpha multiplies it).", group="Mask"),
    Param("mask_invert", "bool", False, "Swap the mask's dream and keep regions.", group="Mask"),
    Param("mask_alpha", "bool", False, "Use the image's alpha as a mask too: dream where the image is opaque, keep transparent pixels exactly (multiplies the mask file, if any; inverting applies to the file only).", label="Mask with alpha", group="Mask"),
    Param("mask_feather", "float", 8.0, "Soft edge, in pixels, inside the mask; outside the mask pixels stay untouched.", minimum=0.0, maximum=512.0, group="Mask"),
    Param("tile_size", "int", 0, "Largest tile side fed to the network (0 = from the memory budget); larger images are tiled seamlessly.", minimum=0, maximum=16384, group="Engine", advanced=True),
    Param("memory_mb", "int", 1536, "Memory budget for the network's activations per tile, in MB.", minimum=64, maximum=65536, label="Memory (MB)", group="Engine", advanced=True),
    Param("frames", "int", 0, "Frame sequence: dream, zoom in, dream again, this many frames (0 = a single image); each frame is an extra output (OUT-frame-00000.png beside the output, new layers in GIMP).", minimum=0, maximum=100000, group="Frames"),
    Param("frame_zoom", "float", 1.05, "Zoom factor applied between frames.", minimum=1.0, maximum=2.0, group="Frames"),
)


def deepdream_spec() -> FilterSpec:
    """The ``deepdream`` filter declaration."""
    return FilterSpec(
        name="deepdream",
        title="DeepDream",
        summary="Amplify what a network sees in the image, at several scales, on images of any size.",
        description=(
            "Gradient ascent on the image to increase the activations of chosen network layers "
            "(or a channel, a neuron, or the features of a guide image), over several octaves with "
            "detail re-injection, random roll jitter and seamless tiling in bounded memory. "
            "Presets reproduce the TensorFlow tutorial and the Keras example on InceptionV3; the "
            "defaults use the embedded EfficientNet-Lite0 and work offline."
        ),
        category="Dream",
        params=PARAMS,
        run="neurofilters.filters.deepdream.engine:run",
        batch_run="neurofilters.filters.deepdream.batched:run_batch",
        preview_params={"octaves": 2, "steps": 3},
        presets=PRESETS,
        preset_param="preset",
        model_presets=MODEL_PRESETS,
    )


@hookimpl
def register_filters() -> list[FilterSpec]:
    """Register the ``deepdream`` filter."""
    return [deepdream_spec()]
