"""Declaration of the ``finetune`` command (imported when the registry is built: no Keras here)."""

from __future__ import annotations

import argparse

from neurofilters.plugin_host import CommandSpec, hookimpl

__all__ = ["configure", "register_commands"]

DESCRIPTION = """Teach a network your own classes. DATA_DIR holds one folder per class (cats/, dogs/ ...)
of images in any format the project reads (bad files are reported and skipped). The first layers of
the base network are frozen, a new head starts as the nearest-class-mean classifier of the frozen
features and learns your classes with augmentation and dropout; validation uses whole sources never
seen in training (--group-by), training stops when the validation accuracy stops improving, the
report prints the frozen baseline beside it, and the result is a .keras file that carries its
class names and preprocessing: use it as --model mynet.keras with classify, deepdream, saliency and
every other filter. Interrupted (Ctrl-C, a crash), the same command resumes from the last epoch."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters finetune``."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="folder with one sub-folder of images per class")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.keras", help="the model file to write")
    parser.add_argument("--base", default="lite0", help="zoo model to start from (default: lite0; see 'neurofilters models')")
    parser.add_argument("--freeze", default="auto", metavar="N|auto",
                        help="freeze the base's first N layers; auto: all of them for small datasets, "
                        "all but the last block for larger ones (default: auto)")
    parser.add_argument("--epochs", default="10", metavar="E", help="most epochs to train (default 10)")
    parser.add_argument("--image-size", default="224", metavar="S", help="side of the training images in pixels (default 224)")
    parser.add_argument("--val-split", default="0.2", metavar="F", help="share of each class kept for validation (default 0.2)")
    parser.add_argument("--group-by", default="trailing-number", metavar="REGEX",
                        help="files of one source stay on one side of the validation split: trailing-number (default: "
                        "names that differ only by a trailing number, brick-1.png brick-2.png, are one source), none, "
                        "or a regular expression whose first group (else match) in the file name is the source")
    parser.add_argument("--augment", default="flip,shift,zoom", metavar="LIST",
                        help="augmentations: any of flip, shift, zoom, contrast, or none (default flip,shift,zoom)")
    parser.add_argument("--batch-size", default="16", metavar="N", help="images per training step (default 16)")
    parser.add_argument("--learning-rate", default="0.001", metavar="X", help="Adam learning rate (default 0.001)")
    parser.add_argument("--patience", default="3", metavar="N", help="epochs without improvement before stopping (default 3)")
    parser.add_argument("--seed", default="0", metavar="N", help="seed of the split, the augmentation and the new head (default 0)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")


@hookimpl
def register_commands() -> list[CommandSpec]:
    """``finetune``: a network that knows the user's classes."""
    return [
        CommandSpec(
            name="finetune",
            help="teach a network your own classes from folders of images",
            description=DESCRIPTION,
            configure=configure,
            run="neurofilters.filters.finetune.train:run_command",
            compute="neurofilters.filters.finetune.train:compute_command",
        )
    ]
