"""Declarations of ``hallucinate``, ``adversarial``, ``add-noise`` and the ``fit-noise`` command (light: no numpy/Keras)."""

from __future__ import annotations

import os

from neurofilters.plugin_host import CommandSpec, FilterSpec, Param, hookimpl

#: A small real noise learned by fit-noise (flamingo, 10/255, 64 px), shipped for previews and smoke tests.
PREVIEW_NOISE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "preview-noise.png")

__all__ = ["ADD_NOISE_PARAMS", "ADVERSARIAL_PARAMS", "FIT_NOISE_PARAMS", "HALLUCINATE_PARAMS", "register_commands", "register_filters"]

HALLUCINATE_PARAMS: tuple[Param, ...] = (
    Param("class_", "class_label", "flamingo", "Class to show: an ImageNet id (130) or name ('flamingo', 'tiger cat'); close names are suggested for typos.", label="Class"),
    Param("start", "choice", "noise", "noise: the class drawn from a seeded start at the image's size (the image only gives the size; with a mask, the class is drawn into the masked part); image: the class drawn into the photo, keeping its composition.", choices=("noise", "image")),
    Param("scale", "float", 0.0, "Size of the class objects as a share of the image's longer side: 0 = the network's own scale (work-size pixels: a flock on a large image), 1 = one object filling the image.", minimum=0.0, maximum=1.0),
    Param("strength", "float", 1.0, "start=image: how far the photo may move toward the class (0.3 subtle, 1 clear, 3 strong).", minimum=0.05, maximum=5.0),
    Param("mask", "image", None, "Greyscale image: the class goes where it is white; where it is black the image is kept exactly (its alpha multiplies it).", group="Mask"),
    Param("model", "model", "lite0", "Classifier (or any network, with a layer and a channel) to visualise."),
    Param("layer", "layer", "logits", "Layer of the objective: 'logits' raises the class; any other layer raises the channel below: of a convolutional layer, or a unit of a fully connected one (a hidden Dense layer, VGG's fc1/fc2).", group="Objective", advanced=True),
    Param("channel", "int", 0, "Channel (or fully connected unit) of a non-logits layer to raise.", minimum=0, group="Objective", advanced=True),
    Param("neuron", "bool", False, "Raise only the channel's centre neuron instead of its mean (a fully connected unit has no position: ignored).", group="Objective", advanced=True),
    Param("steps", "int", 128, "Optimisation steps (of each stage: objects larger than the network's input take a small layout render first).", minimum=1, maximum=4096),
    Param("parameterization", "choice", "spectral", "spectral: the image is a learned spectrum with decorrelated colour (sharp, natural colours); pixel: plain pixels from grey and seeded noise (the textbook baseline: high-frequency mush).", choices=("spectral", "pixel"), advanced=True),
    Param("recipe", "choice", "robust", "noise: 'robust' (strong random views, 4 per step; transfers to other networks) or 'lucid' (Lucid's standard transforms, one view per step).", choices=("robust", "lucid"), advanced=True),
    Param("work_size", "int", 224, "Side of the network's views, in pixels (its input size); an image no larger is optimised whole and resized.", minimum=64, maximum=1024, advanced=True),
    Param("learning_rate", "float", 0.05, "start=noise: Adam's step on the spectrum of a render at the work size; a larger image takes it times sqrt(its side / work size), at most 2x, so its parts get as colourful as a small render (start=image: set by the strength).", minimum=1e-4, maximum=1.0, advanced=True),
)

ADVERSARIAL_PARAMS: tuple[Param, ...] = (
    Param("target", "class_label", "flamingo", "Class the network should see: an ImageNet id or name; none = untargeted, away from the class the network sees in the photo.", label="Target class"),
    Param("epsilon", "float", 8.0, "Largest change of any pixel, in 1/255 units (L-infinity bound).", minimum=0.5, maximum=64.0),
    Param("model", "model", "lite0", "Classifier to fool."),
    Param("steps", "int", 40, "Projected-gradient steps.", minimum=1, maximum=1000),
)

ADD_NOISE_PARAMS: tuple[Param, ...] = (
    Param("noise", "image", None, "The noise: the 16-bit PNG written by 'neurofilters fit-noise' (beside its .npz), or any image, read the same way: each value v in [0, 1] changes the pixel by (v - 0.5)/4 times the strength (8-bit code c: (c - 127.5)/4 in 1/255; mid-grey = no change, black/white = -/+31.9/255; alpha multiplies it), stretched over the image.", label="Noise image", required=True),
    Param("strength", "float", 1.0, "Multiplier of the noise (1 = as learned, or as the noise image's values say).", minimum=0.0, maximum=8.0),
)


@hookimpl
def register_filters() -> list[FilterSpec]:
    """``hallucinate``, ``adversarial`` and ``add-noise``."""
    return [
        FilterSpec(
            name="hallucinate",
            title="Hallucinate class",
            summary="Show what the network thinks a class (or a channel) looks like, at the image's size: from noise or drawn into the photo.",
            description=(
                "Activation maximisation with a spectral, colour-decorrelated parameterisation and "
                "random views of the network's input size over the whole image (transformation robustness); "
                "from seeded noise or from the photo, optionally within a mask."
            ),
            category="Dream",
            params=HALLUCINATE_PARAMS,
            run="neurofilters.filters.hallucinate.run:run_hallucinate",
            preview_params={"steps": 2, "work_size": 64},
        ),
        FilterSpec(
            name="adversarial",
            title="Adversarial image",
            summary="Change the photo invisibly so the network sees another class (targeted, L-infinity).",
            description=(
                "Projected gradient descent on the target's cross-entropy within an L-infinity ball of "
                "epsilon/255; reports the top-5 before and after and the PSNR."
            ),
            category="Dream",
            params=ADVERSARIAL_PARAMS,
            run="neurofilters.filters.hallucinate.adversarial:run_adversarial",
            preview_params={"steps": 2},
        ),
        FilterSpec(
            name="add-noise",
            title="Add universal noise",
            summary="Add a universal class noise (from 'neurofilters fit-noise', or any image read as one) to the image.",
            description=(
                "The noise image's values v become changes (v - 0.5)/4 (fit-noise's PNG holds its noise this way; "
                "any other image is read alike), resized to the image and added, times the strength; pixels are clipped to [0, 1]."
            ),
            category="Dream",
            params=ADD_NOISE_PARAMS,
            run="neurofilters.filters.hallucinate.noise:run_add_noise",
            preview_params={"noise": PREVIEW_NOISE},
        ),
    ]


#: ``neurofilters fit-noise``'s parameters.
FIT_NOISE_PARAMS: tuple[Param, ...] = (
    Param("folder", "string", None, "folder of photos (searched recursively)", positional=True),
    Param("class_", "string", None, "target class: ImageNet id or name", required=True, metavar="CLASS"),
    Param("output", "string", None, "the noise file to write (.npz; a 16-bit .png is written beside it)",
          required=True, short="-o", metavar="FILE.npz"),
    Param("model", "model", "lite0", "classifier"),
    Param("epsilon", "float", 10.0, "L-infinity bound in 1/255 units (above 0, at most 31)"),
    Param("epochs", "int", None, "passes over the training photos, each photo seen as a new random crop every time "
          "(default: enough for about 600 steps); changing it starts the fit afresh", minimum=1),
    Param("batch_size", "int", 16, "photos per step", minimum=1),
    Param("held_out", "float", 0.3, "share of the photos kept for measuring (above 0, below 1)"),
    Param("seed", "int", 0, "seed of the split and the photo order", minimum=0, maximum=2**63 - 1),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``fit-noise``: learn a universal class noise over a folder of images."""
    return [
        CommandSpec(
            name="fit-noise",
            help="learn a universal class-K noise over a folder of images (writes .npz and a 16-bit PNG)",
            params=FIT_NOISE_PARAMS,
            run="neurofilters.filters.hallucinate.fit_noise:compute",
            render="neurofilters.filters.hallucinate.fit_noise:render",
        )
    ]
