"""The command line's commands as typed Python functions: ``neurofilters.classify``, ``layers``, ``finetune`` ...

Each function is a call of :func:`neurofilters.run_command` with the command's
declared parameters as arguments: the host validates them against the
command's declaration (its ``Param``s), as the command line does, so a bad value
raises the :class:`~neurofilters.ParameterError` (or, for a missing required
one, the :class:`~neurofilters.plugin_host.UsageError`) that ``neurofilters
COMMAND`` reports with exit code 2, with the same text, and files are written
through the host's guarded writer. The functions return the command's result
object (rows, a table, a report, the paths written) instead of printing it.
Importing this module imports no framework.

:data:`COMMAND_FUNCTIONS` maps each built-in command to its function; the tests
check every registered command has one and that its arguments and defaults are
the command's declared parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

from .plugin_host.api import run_command

if TYPE_CHECKING:  # the result types live beside each command's run function
    from .filters.explorer.atlas import AtlasResult
    from .filters.explorer.patches import PatchesResult
    from .filters.explorer.similar import SimilarResult
    from .filters.finetune.train import FinetuneResult
    from .filters.hallucinate.fit_noise import NoiseFit
    from .filters.saliency.commands import SaliencyCheck
    from .filters.zoo.commands import Classification, LayerTable

__all__ = [
    "COMMAND_FUNCTIONS", "atlas", "classify", "explore_patches", "explore_similar", "finetune", "fit_noise", "layers",
    "saliency_check",
]

PathText = Union[str, "os.PathLike[str]"]


def classify(images: PathText | Sequence[PathText], *, model: str = "lite0", top: int = 5) -> list[Classification]:
    """The top classes a classifier sees in each image (``neurofilters classify``).

    Args:
        images: An image file, or several (the model loads once for all of them).
        model: A classifier of the zoo (``lite0``, ``inception-v3`` ...) or a ``.keras`` file.
        top: How many classes per image, >= 1.

    Returns:
        One :class:`~neurofilters.filters.zoo.commands.Classification` per image, in
        order: its ``scores`` (``rank``, ``class_id``, ``label``, ``probability``),
        most probable first; ``.label`` and ``.probability`` are the first's.

    Raises:
        ParameterError: ``top`` < 1, an unknown model or one without a classifier head.
        ImageIOError: An image cannot be read (every image is read before the model loads).

    Example:
        >>> import neurofilters
        >>> [row] = neurofilters.classify("photo.jpg", top=3)  # a photo of a cat
        >>> "cat" in row.label, [score.rank for score in row.scores]
        (True, [1, 2, 3])
        >>> row.scores[0].label == row.label and 0 < row.probability <= 1
        True
        >>> neurofilters.classify("photo.jpg", top=0)
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --top must be an integer >= 1. Received: --top 0
    """
    paths = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    return run_command("classify", *paths, model=model, top=top).value  # type: ignore[no-any-return]


def layers(model: str, *, graph: PathText | None = None) -> LayerTable:
    """The analyzeNetwork table of a model (``neurofilters layers MODEL``).

    Args:
        model: A model of the zoo or a ``.keras`` file.
        graph: Also draw the network to this new file (``.svg``, ``.png``, ``.pdf``,
            ``.dot``; needs pydot and Graphviz).

    Returns:
        A :class:`~neurofilters.filters.zoo.commands.LayerTable`: ``rows`` (``name``,
        ``alias``, ``type``, ``activations`` shape, ``learnables``, ``count``,
        ``dream``), ``total``, ``trainable``, ``non_trainable``, ``input_size``;
        ``table["block5"]`` finds a row by name or alias, ``to_dict()`` is
        ``--format json``'s document.

    Raises:
        RegistryError: Unknown model.
        ParameterError: A bad ``graph`` name (or an existing file).
        NeurofiltersError: ``graph`` asked for and pydot or Graphviz missing.

    Example:
        >>> import neurofilters
        >>> table = neurofilters.layers("lite0")
        >>> table.rows[0].type, table.input_size, table.total
        ('Input', 224, 4694024)
        >>> table["stem_conv"].activations
        (112, 112, 32)
    """
    from .plugin_host.core.errors import NeurofiltersError

    result = run_command("layers", model, graph=graph).value
    if result.graph_problem is not None:
        raise NeurofiltersError(result.graph_problem.removeprefix("neurofilters: "))
    return result.tables[0]  # type: ignore[no-any-return]


def saliency_check(
    model: str,
    image: PathText,
    *,
    class_: str | int = "top-1",
    methods: str | Sequence[str] | None = None,
    layer: str = "auto",
    levels: int = 0,
    samples: int = 16,
    steps: int = 16,
    seed: int = 0,
    figure: PathText | None = None,
    overwrite: bool = False,
) -> SaliencyCheck:
    """The cascading-randomisation sanity check of saliency methods (``neurofilters saliency-check``).

    Args:
        model: A classifier of the zoo or a ``.keras`` file.
        image: The image explained.
        class_: The class explained (``--class``): ``top-1``, ``top-N``, an id or a name.
        methods: Methods to check (a list or a comma-separated text; default: every method).
        layer: The CAM layer (``auto``: the last convolutional block).
        levels: Randomise only the top N groups of layers (0: all).
        samples: SmoothGrad samples.
        steps: Integrated-gradients steps.
        seed: Seed of the random weights and the noise.
        figure: Also write the maps as an image grid to this file.
        overwrite: Replace an existing ``figure`` that neurofilters did not write.

    Returns:
        A :class:`~neurofilters.filters.saliency.commands.SaliencyCheck`: ``levels``,
        ``correlations`` per method and level, ``class_id``, ``cam_layer``, ``figure``.

    Raises:
        ParameterError: A bad value (before the model loads), an unknown class.

    Example:
        >>> import neurofilters
        >>> check = neurofilters.saliency_check("lite0", "photo.jpg", methods=["gradient"], levels=1)
        >>> check.levels, round(max(check.correlations["gradient"]), 2)  # the intact map matches itself
        (('original', 'logits'), 1.0)
        >>> neurofilters.saliency_check("lite0", "photo.jpg", methods="sharpen")
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --methods must be a comma-separated list of ...
    """
    return run_command(  # type: ignore[no-any-return]
        "saliency-check", model, image, class_=class_, methods=methods, layer=layer, levels=levels, samples=samples,
        steps=steps, seed=seed, figure=figure, overwrite=overwrite,
    ).value


def fit_noise(
    folder: PathText,
    *,
    class_: str | int,
    output: PathText,
    model: str = "lite0",
    epsilon: float = 10.0,
    epochs: int | None = None,
    batch_size: int = 16,
    held_out: float = 0.3,
    seed: int = 0,
    overwrite: bool = False,
) -> NoiseFit:
    """Fit a universal class noise on a folder of photos (``neurofilters fit-noise``).

    A rerun with the same arguments resumes from the checkpoint an interrupted
    run left (``OUTPUT.partial.npz``).

    Args:
        folder: A folder of photos (searched recursively; at least 2).
        class_: The target class (``--class``): an ImageNet id or name.
        output: The ``.npz`` file to write; a 16-bit ``.png`` for ``add-noise`` is written beside it.
        model: The classifier.
        epsilon: L-infinity bound in 1/255 units, in (0, 31].
        epochs: Passes over the training photos (default: about 600 steps).
        batch_size: Photos per step.
        held_out: Share of the photos kept for measuring, in (0, 1).
        seed: Seed of the split and the photo order.
        overwrite: Replace existing outputs that neurofilters did not write (never an input).

    Returns:
        A :class:`~neurofilters.filters.hallucinate.fit_noise.NoiseFit`: the files
        written, the target, and the fooling rates on the training and held-out photos.

    Raises:
        ParameterError: A bad value (before the model loads), an unknown class.
        UsageError: Fewer than 2 photos, an output that is not ``.npz`` or would replace a file.

    Example:
        >>> import neurofilters
        >>> fit = neurofilters.fit_noise("photos", class_="flamingo", output="noise.npz", epochs=1)
        >>> fit.image.name, fit.target, fit.label, 0 < fit.max_abs <= fit.epsilon
        ('noise.png', 130, 'flamingo', True)
        >>> neurofilters.fit_noise("photos", class_="flamingo", output="noise.npz", epsilon=40)
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --epsilon must be a number above 0 and at most 31 (in 1/255 units). Received: --epsilon 40.0
    """
    return run_command(  # type: ignore[no-any-return]
        "fit-noise", folder, class_=class_, output=output, model=model, epsilon=epsilon, epochs=epochs, batch_size=batch_size,
        held_out=held_out, seed=seed, overwrite=overwrite,
    ).value


def finetune(
    data_dir: PathText,
    *,
    output: PathText,
    base: str = "lite0",
    freeze: int | str = "auto",
    epochs: int = 10,
    image_size: int = 224,
    val_split: float = 0.2,
    group_by: str = "trailing-number",
    augment: str | Sequence[str] = ("flip", "shift", "zoom"),
    batch_size: int = 16,
    learning_rate: float = 0.001,
    patience: int = 3,
    seed: int = 0,
    quiet: bool = False,
    overwrite: bool = False,
) -> FinetuneResult:
    """Teach a network your own classes from folders of images (``neurofilters finetune``).

    Args:
        data_dir: A folder with one sub-folder of images per class.
        output: The ``.keras`` file to write (its folder must exist); a ``-confusion.png`` is written beside it.
        base: The zoo model to start from.
        freeze: Freeze the base's first N layers, or ``auto``.
        epochs: Most epochs to train.
        image_size: Side of the training images in pixels.
        val_split: Share of each class kept for validation, in [0.05, 0.5].
        group_by: ``trailing-number``, ``none`` or a regular expression naming a file's source.
        augment: Augmentations (a list or comma-separated text of flip, shift, zoom, contrast), or ``none``.
        batch_size: Images per training step.
        learning_rate: Adam's learning rate.
        patience: Epochs without improvement before stopping.
        seed: Seed of the split, the augmentation and the new head.
        quiet: No progress bar on stderr.
        overwrite: Replace existing outputs that neurofilters did not write (never an input).

    Returns:
        A :class:`~neurofilters.filters.finetune.train.FinetuneResult`: ``model`` (the
        file to use as ``model=``), ``confusion_image``, ``accuracy``, ``class_names``
        and the full validation ``report``.

    Raises:
        ParameterError: A bad value (before any model loads), bad data.
        UsageError: An output that would replace an input or a file neurofilters did not write.

    Example:
        >>> import neurofilters
        >>> result = neurofilters.finetune("textures", output="net.keras", image_size=64, epochs=1, quiet=True)
        >>> result.class_names, result.model.name, result.confusion_image.name
        (['brick', 'grass'], 'net.keras', 'net-confusion.png')
        >>> [row] = neurofilters.classify("textures/brick/00.png", model="net.keras", top=2)
        >>> sorted(score.label for score in row.scores)
        ['brick', 'grass']
        >>> neurofilters.finetune("textures", output="net.h5")
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: "--output" must end in .keras. Received: -o net.h5
    """
    return run_command(  # type: ignore[no-any-return]
        "finetune", data_dir, output=output, base=base, freeze=str(freeze), epochs=epochs, image_size=image_size,
        val_split=val_split, group_by=group_by, augment=augment, batch_size=batch_size, learning_rate=learning_rate,
        patience=patience, seed=seed, quiet=quiet, overwrite=overwrite,
    ).value


def explore_patches(
    model: str,
    layer: str,
    channel: int,
    folder: PathText,
    *,
    output: PathText,
    top: int = 16,
    per_image: int = 1,
    size: int = 224,
    tile: int = 128,
    batch_size: int = 16,
    maps: bool = False,
    overwrite: bool = False,
) -> PatchesResult:
    """The positions of a folder's images that most activate a channel, as a contact sheet (``neurofilters explore patches``).

    Args:
        model: A model of the zoo.
        layer: A layer name or alias (see :func:`layers`).
        channel: The channel number.
        folder: A folder of images (searched recursively).
        output: The contact sheet to write.
        top: Number of patches.
        per_image: Most patches taken from one image.
        size: Longer side the images are resized to before the network.
        tile: Side of each patch on the sheet in pixels.
        batch_size: Images per forward pass.
        maps: Beside each patch, the unit's guided-backprop map at that position (same resized image, same field).
        overwrite: Replace an existing sheet that neurofilters did not write.

    Returns:
        A :class:`~neurofilters.filters.explorer.patches.PatchesResult`: the ``sheet``
        written and the ``patches`` (``score``, ``path``, ``y``, ``x``), best first.

    Raises:
        ParameterError: A bad value (before the model loads), a channel the layer lacks.
        UsageError: The sheet would replace an input or a file neurofilters did not write.

    Example:
        >>> import neurofilters
        >>> found = neurofilters.explore_patches("lite0", "block5", 3, "photos", output="sheet.png", top=2, size=96)
        >>> found.sheet.name, len(found.patches), found.patches[0].score >= found.patches[1].score
        ('sheet.png', 2, True)
        >>> neurofilters.explore_patches("lite0", "block5", 3, "photos", output="sheet.png", top=0)
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --top must be an integer between 1 and 1000. Received: --top 0
    """
    return run_command(  # type: ignore[no-any-return]
        "explore", "patches", model, layer, channel, folder, output=output, top=top, per_image=per_image, size=size,
        tile=tile, batch_size=batch_size, maps=maps, overwrite=overwrite,
    ).value


def explore_similar(
    query: PathText,
    folder: PathText,
    *,
    layer: str,
    model: str = "lite0",
    top: int = 10,
    size: int = 224,
    output: PathText | None = None,
    no_cache: bool = False,
    overwrite: bool = False,
) -> SimilarResult:
    """A folder's images ranked by feature similarity to a query image (``neurofilters explore similar``).

    Args:
        query: The query image.
        folder: A folder of images (searched recursively).
        layer: A layer name or alias: early layers match colour and texture, late ones content.
        model: A model of the zoo.
        top: Number of results.
        size: Longer side the images are resized to.
        output: Also write the query and its best matches as a contact sheet.
        no_cache: Neither read nor write the feature cache.
        overwrite: Replace an existing sheet that neurofilters did not write.

    Returns:
        A :class:`~neurofilters.filters.explorer.similar.SimilarResult`: the ``matches``
        (``rank``, ``similarity``, ``path``), most similar first, and the ``sheet`` written (or ``None``).

    Raises:
        ParameterError: A bad value, a query that is no file, an unknown layer.

    Example:
        >>> import neurofilters
        >>> ranked = neurofilters.explore_similar("photo.jpg", "photos", layer="block5", top=2, no_cache=True)
        >>> [match.rank for match in ranked.matches], ranked.sheet is None
        ([1, 2], True)
        >>> ranked.matches[0].similarity >= ranked.matches[1].similarity
        True
    """
    return run_command(  # type: ignore[no-any-return]
        "explore", "similar", query, folder, layer=layer, model=model, top=top, size=size, output=output,
        no_cache=no_cache, overwrite=overwrite,
    ).value


def atlas(
    model: str,
    *,
    output: PathText,
    layers: str | Sequence[str] | None = None,
    channels: int = 16,
    images: PathText | None = None,
    steps: int = 96,
    size: int = 112,
    patches: int = 6,
    seed: int = 0,
    maps: bool = False,
    overwrite: bool = False,
) -> AtlasResult:
    """A static HTML atlas of a network (``neurofilters atlas``): layer table, channel visualisations, top patches.

    Args:
        model: A model of the zoo.
        output: The folder to write the site into (``index.html`` and images).
        layers: Layers to visualise (a list or comma-separated text; default: three dream layers).
        channels: Channels per layer (the first N).
        images: A folder of images: each channel's top-activating patches are added.
        steps: Optimisation steps per channel visualisation.
        size: Side of each channel visualisation in pixels.
        patches: Top-activating patches per channel.
        seed: Seed of the visualisations.
        maps: With ``images``: each patch's guided-backprop map beside it (one backward pass per patch).
        overwrite: Replace existing files that neurofilters did not write.

    Returns:
        An :class:`~neurofilters.filters.explorer.atlas.AtlasResult`: the ``index`` page
        written, its ``folder``, the ``layers`` visualised and the ``channels`` per layer.

    Raises:
        ParameterError: A bad value (before the model loads), an unknown layer.
        UsageError: A page would replace a file neurofilters did not write.

    Example:
        >>> import neurofilters
        >>> site = neurofilters.atlas("lite0", output="atlas", layers=["block3"], channels=2, steps=8)  # doctest: +SKIP
        >>> site.index.name, len(site.layers)  # doctest: +SKIP
        ('index.html', 1)
        >>> neurofilters.atlas("lite0", output="atlas", channels=0)
        Traceback (most recent call last):
        ...
        neurofilters.plugin_host.core.errors.ParameterError: --channels must be an integer between 1 and 4096. Received: --channels 0
    """
    return run_command(  # type: ignore[no-any-return]
        "atlas", model, output=output, layers=layers, channels=channels, images=images, steps=steps, size=size,
        patches=patches, seed=seed, maps=maps, overwrite=overwrite,
    ).value


#: The Python function of each built-in command (``explore`` has one per action).
COMMAND_FUNCTIONS: dict[str, tuple[Callable[..., Any], ...]] = {
    "classify": (classify,),
    "layers": (layers,),
    "saliency-check": (saliency_check,),
    "fit-noise": (fit_noise,),
    "finetune": (finetune,),
    "explore": (explore_patches, explore_similar),
    "atlas": (atlas,),
}
