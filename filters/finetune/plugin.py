"""Declaration of the ``finetune`` command (imported when the registry is built: no Keras here)."""

from __future__ import annotations

from neurofilters.plugin_host import CommandSpec, Param, hookimpl

__all__ = ["AUGMENT_CHOICES", "FINETUNE_PARAMS", "register_commands"]

DESCRIPTION = """Teach a network your own classes. DATA_DIR holds one folder per class (cats/, dogs/ ...)
of images in any format the project reads (bad files are reported and skipped). The first layers of
the base network are frozen, a new head starts as the nearest-class-mean classifier of the frozen
features and learns your classes with augmentation and dropout; validation uses whole sources never
seen in training (--group-by), training stops when the validation accuracy stops improving, the
report prints the frozen baseline beside it, and the result is a .keras file that carries its
class names and preprocessing: use it as --model mynet.keras with classify, deepdream, saliency and
every other filter. Interrupted (Ctrl-C, a crash), the same command resumes from the last epoch."""


#: Augmentations ``--augment`` lists (``train.AUGMENTATIONS``, kept light here), and ``none``.
AUGMENT_CHOICES = ("flip", "shift", "zoom", "contrast", "none")

#: ``neurofilters finetune``'s parameters.
FINETUNE_PARAMS: tuple[Param, ...] = (
    Param("data_dir", "string", None, "folder with one sub-folder of images per class", positional=True, metavar="DATA_DIR"),
    Param("output", "string", None, "the model file to write", required=True, short="-o", metavar="MODEL.keras"),
    Param("base", "model", "lite0", "zoo model to start from (see 'neurofilters models')"),
    Param("freeze", "string", "auto", "freeze the base's first N layers; auto: all of them for small datasets, all but "
          "the last block for larger ones", metavar="N|auto"),
    Param("epochs", "int", 10, "most epochs to train", minimum=1, maximum=1000, metavar="E"),
    Param("image_size", "int", 224, "side of the training images in pixels", minimum=32, maximum=1024, metavar="S"),
    Param("val_split", "float", 0.2, "share of each class kept for validation", minimum=0.05, maximum=0.5, metavar="F"),
    Param("group_by", "string", "trailing-number", "files of one source stay on one side of the validation split: "
          "trailing-number (names that differ only by a trailing number, brick-1.png brick-2.png, are one source), none, "
          "or a regular expression whose first group (else match) in the file name is the source", metavar="REGEX"),
    Param("augment", "choice", ("flip", "shift", "zoom"), "augmentations, or none", choices=AUGMENT_CHOICES, nargs=",",
          metavar="LIST"),
    Param("batch_size", "int", 16, "images per training step", minimum=1, maximum=4096),
    Param("learning_rate", "float", 0.001, "Adam learning rate", minimum=1e-7, maximum=1.0),
    Param("patience", "int", 3, "epochs without improvement before stopping", minimum=1, maximum=1000),
    Param("seed", "int", 0, "seed of the split, the augmentation and the new head", minimum=0, maximum=2**31 - 1),
    Param("quiet", "bool", False, "no progress bar", short="-q"),
    Param("overwrite", "bool", False, "replace existing files that neurofilters did not write (never an input)"),
)


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``finetune``: a network that knows the user's classes."""
    return [
        CommandSpec(
            name="finetune",
            help="teach a network your own classes from folders of images",
            description=DESCRIPTION,
            params=FINETUNE_PARAMS,
            run="neurofilters.filters.finetune.train:compute_command",
            render="neurofilters.filters.finetune.train:render_command",
        )
    ]
