"""The ``explore`` (``patches``, ``similar``) and ``atlas`` commands: arguments (light) and dispatch.

``configure_*`` only declare argparse arguments; the ``run_*`` functions import
the heavy modules when the command runs.
"""

from __future__ import annotations

import argparse

__all__ = ["configure_atlas", "configure_explore", "run_atlas", "run_explore"]


def configure_explore(parser: argparse.ArgumentParser) -> None:
    """Sub-parsers ``patches`` and ``similar`` of ``neurofilters explore``."""
    sub = parser.add_subparsers(dest="explore_command", metavar="ACTION")
    patches = sub.add_parser(
        "patches",
        help="the k positions of a folder's images that most activate a channel, as a contact sheet",
        description="Crops the exact receptive field of each of the k most active positions of CHANNEL over FOLDER into a contact sheet with scores.",
    )
    patches.add_argument("model", help="model name (see 'neurofilters models')")
    patches.add_argument("layer", help="layer name or alias (see 'neurofilters layers MODEL')")
    patches.add_argument("channel", help="channel number")
    patches.add_argument("folder", help="folder of images (searched recursively)")
    patches.add_argument("-o", "--output", required=True, help="contact sheet to write (.png, .jpg, ...)")
    patches.add_argument("-k", "--top", default="16", help="number of patches (default 16)")
    patches.add_argument("--per-image", default="1", help="most patches taken from one image (default 1)")
    patches.add_argument("--size", default="224", help="longer side the images are resized to before the network (default 224)")
    patches.add_argument("--tile", default="128", help="side of each patch on the sheet in pixels (default 128)")
    patches.add_argument("--batch-size", default="16", help="images per forward pass (default 16)")
    patches.add_argument("--maps", action="store_true",
                         help="beside each patch, the unit's guided-backprop map at that position, on the same resized image and cropped to the same field")
    patches.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")
    similar = sub.add_parser(
        "similar",
        help="rank a folder's images by feature similarity to a query image",
        description=(
            "Ranks FOLDER's images by the cosine similarity of their features at --layer to QUERY's: early layers "
            "match colour and texture, late ones content; a fully connected layer (a hidden Dense layer, the logits, VGG's fc1/fc2) "
            "compares the whole-image vectors of its units. Features are cached, so later queries on the folder are fast."
        ),
    )
    similar.add_argument("query", help="query image")
    similar.add_argument("folder", help="folder of images (searched recursively)")
    similar.add_argument("--layer", required=True, help="layer name or alias: convolutional or fully connected")
    similar.add_argument("--model", default="lite0", help="model (default lite0)")
    similar.add_argument("--top", default="10", help="number of results printed (default 10)")
    similar.add_argument("--size", default="224", help="longer side the images are resized to (default 224)")
    similar.add_argument("-o", "--output", default=None, help="also write the query and its best matches as a contact sheet")
    similar.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    similar.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")
    parser.set_defaults(explore_parser=parser)


def run_explore(args: argparse.Namespace) -> int:
    """Dispatch ``explore patches`` / ``explore similar``."""
    if args.explore_command == "patches":
        from .patches import run_patches_command

        return run_patches_command(args)
    if args.explore_command == "similar":
        from .similar import run_similar_command

        return run_similar_command(args)
    args.explore_parser.print_help()
    return 2


def configure_atlas(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``neurofilters atlas``."""
    parser.add_argument("model", help="model name (see 'neurofilters models')")
    parser.add_argument("-o", "--output", required=True, help="folder to write the site into (index.html and images)")
    parser.add_argument("--layers", default=None, help="comma-separated layers to visualise (default: three dream layers of the model)")
    parser.add_argument("--channels", default="16", help="channels per layer (default 16: the first 16)")
    parser.add_argument("--images", default=None, help="folder of images: each channel's top-activating patches are added")
    parser.add_argument("--steps", default="96", help="optimisation steps per channel visualisation (default 96)")
    parser.add_argument("--size", default="112", help="side of each channel visualisation in pixels (default 112)")
    parser.add_argument("--patches", default="6", help="top-activating patches per channel (default 6)")
    parser.add_argument("--maps", action="store_true",
                        help="with --images: beside each patch, the unit's guided-backprop map there (one backward pass per patch)")
    parser.add_argument("--seed", default="0", help="seed of the visualisations (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files that neurofilters did not write (never an input)")


def run_atlas(args: argparse.Namespace) -> int:
    """Write the atlas."""
    from .atlas import run_atlas_command

    return run_atlas_command(args)
