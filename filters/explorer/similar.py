"""``explore similar``: rank a folder's images by feature similarity to a query, with a feature cache.

An image's descriptor at a layer is the per-channel mean and standard
deviation of its activations over all positions (spatial statistics, so a
slightly cropped or shifted copy keeps nearly the same descriptor),
L2-normalised; images are ranked by cosine similarity. Early layers thus
match colour and texture, late layers content. A fully connected layer (a
hidden ``Dense`` layer, the logits, VGG's ``fc1``/``fc2``) has one vector per
image, whose units each see the whole image: that vector, L2-normalised, is
the descriptor.

The cache (one ``.npz`` per model, layer, size and folder under the weight
cache folder, ``$NEUROFILTERS_CACHE_DIR``) keeps each file's descriptor with
its size and modification time; a later query recomputes only new or
changed files, and the cache is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurofilters.plugin_host import CommandContext, ParameterError, WriteGuard

from ..zoo.units import layer_units
from .patches import find_images, load_or_skip, load_work_image, report_skipped
from .render import grid, label_tile, resize

__all__ = ["FeatureCache", "cache_file", "descriptor", "folder_descriptors", "rank", "Match", "SimilarResult", "similar_command", "render_similar"]


def descriptor(maps: np.ndarray) -> np.ndarray:
    """An image's descriptor at a layer, L2-normalised (float32).

    Args:
        maps: ``h x w x C`` activations (a convolutional layer: the per-channel
            mean and standard deviation, ``2C`` values) or ``N`` units (a fully
            connected layer: the units themselves).
    """
    if maps.ndim == 1:
        vector = maps.astype(np.float64)
    else:
        flat = maps.reshape(-1, maps.shape[-1]).astype(np.float64)
        vector = np.concatenate([flat.mean(axis=0), flat.std(axis=0)])
    return (vector / max(np.linalg.norm(vector), 1e-12)).astype(np.float32)


def cache_file(model: str, layer: str, size: int, folder: Path) -> Path:
    """Where the descriptors of ``folder``'s images at ``layer`` are cached."""
    from ..zoo.cache import cache_dir

    key = hashlib.sha256(f"{model}\0{layer}\0{size}\0{os.fspath(folder.resolve())}".encode()).hexdigest()[:16]
    return cache_dir() / "features" / f"{model}-{layer}-{size}-{key}.npz"


class FeatureCache:
    """Descriptors of files, valid while a file's size and modification time are unchanged."""

    def __init__(self, path: Path | None) -> None:
        """Read the cache at ``path`` (``None``: no cache; an unreadable file counts as empty)."""
        self.path = path
        self.guard: WriteGuard | None = None  # the host's guarded writer (set by the command: never over an input)
        self.entries: dict[str, tuple[int, int, np.ndarray]] = {}
        self.changed = False
        if path is None or not path.is_file():
            return
        try:
            with np.load(path, allow_pickle=False) as data:
                index = json.loads(str(data["index"]))
                vectors = data["vectors"]
            for row, (name, size, mtime) in enumerate(index):
                self.entries[name] = (int(size), int(mtime), vectors[row])
        except (OSError, ValueError, KeyError):
            self.entries = {}

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        status = path.stat()
        return status.st_size, status.st_mtime_ns

    def get(self, path: Path) -> np.ndarray | None:
        """The cached descriptor of ``path``, or ``None`` if missing or stale."""
        entry = self.entries.get(os.fspath(path.resolve()))
        if entry is None or entry[:2] != self._stamp(path):
            return None
        return entry[2]

    def put(self, path: Path, vector: np.ndarray) -> None:
        """Remember ``path``'s descriptor."""
        self.entries[os.fspath(path.resolve())] = (*self._stamp(path), vector)
        self.changed = True

    def save(self) -> None:
        """Write the cache atomically (when something changed)."""
        if self.path is None or not self.changed or not self.entries:
            return
        # the host's own cache folder: replaced freely, but never over a file the user named
        guard = self.guard if self.guard is not None else WriteGuard(overwrite=True)
        guard.mkdir(self.path.parent, what="feature cache folder")
        names = sorted(self.entries)
        index = json.dumps([[name, self.entries[name][0], self.entries[name][1]] for name in names])
        vectors = np.stack([self.entries[name][2] for name in names])
        with guard.write(self.path, what="feature cache") as temporary, open(temporary, "wb") as stream:
            np.savez(stream, index=np.array(index), vectors=vectors)
        self.changed = False


def folder_descriptors(
    model: Any,
    layer: str,
    paths: Sequence[Path],
    *,
    size: int = 224,
    cache: FeatureCache | None = None,
    progress: Callable[[float, str], None] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> np.ndarray:
    """Descriptors of ``paths`` (``N x 2C``), from the cache where valid, else computed (and cached).

    With ``skipped`` given, unreadable files are left out (rows only for the others, in order) and listed there.
    """
    feature = model.feature_model([layer])
    vectors: list[np.ndarray | None] = [cache.get(path) if cache is not None else None for path in paths]
    missing = [index for index, vector in enumerate(vectors) if vector is None]
    for done, index in enumerate(missing, start=1):
        image = load_or_skip(paths[index], size, model.min_size, skipped, getattr(model, "fixed_input", None))
        if image is None:
            continue
        maps = np.asarray(feature(image[None], training=False)[0][0], np.float32)
        vectors[index] = descriptor(maps)
        if cache is not None:
            cache.put(paths[index], vectors[index])
        if progress is not None:
            progress(done / len(missing), f"{done}/{len(missing)} images")
    if cache is not None:
        cache.save()
    kept = [vector for vector in vectors if vector is not None]
    return np.stack(kept) if kept else np.zeros((0, 0), np.float32)


def rank(query: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``vectors`` by decreasing cosine similarity to ``query``, and the similarities."""
    similarities = vectors @ query
    order = np.argsort(-similarities, kind="stable")
    return order, similarities[order]


@dataclass(frozen=True)
class Match:
    """One image of the folder, ranked by similarity to the query.

    Attributes:
        rank: 1 for the most similar.
        similarity: Cosine similarity of its features to the query's, in [-1, 1].
        path: The image file.
    """

    rank: int
    similarity: float
    path: Path


@dataclass(frozen=True)
class SimilarResult:
    """What ``explore similar`` found.

    Attributes:
        query: The query image.
        layer: The layer compared (its raw name).
        matches: The best matches, most similar first.
        sheet: The contact sheet written (``-o``), or ``None``.
        skipped: ``(path, reason)`` of each image that could not be read.
    """

    query: Path
    layer: str
    matches: tuple[Match, ...]
    sheet: Path | None = None
    skipped: tuple[tuple[str, str], ...] = ()


def similar_command(values: Mapping[str, Any], context: CommandContext) -> SimilarResult:
    """``neurofilters explore similar QUERY FOLDER --layer L``: the ranking (and the sheet), nothing printed.

    Args:
        values: The validated parameters (``plugin.SIMILAR_PARAMS``).
        context: The host's context: its model cache and guarded writer.

    Raises:
        ParameterError: A query that is no file, a folder without a readable image, an unknown layer.
        UsageError: The sheet would replace an input or a file neurofilters did not write.
    """
    top, size, folder = values["top"], values["size"], values["folder"]
    paths = find_images(folder)
    query_path = Path(values["query"])
    if not query_path.is_file():
        raise ParameterError(f'"query" must be an existing image file. Received: query={values["query"]!r}',
                             param="query", value=values["query"])
    inputs = [("the query image", query_path), ("the folder of images", folder), ("the model file", values["model"])]
    guard = context.writer(*inputs)
    if values["output"]:
        guard.check(values["output"], what="contact sheet (-o)")  # before any work
    model = context.load_model(values["model"])
    layer = layer_units(model, values["layer"]).name  # convolutional or fully connected
    cache = None if values["no_cache"] else FeatureCache(cache_file(model.name, layer, size, Path(folder)))
    if cache is not None:
        cache.guard = context.writer(*inputs, overwrite=True)  # type: ignore[assignment]  # its own file, rewritten at will
    skipped: list[tuple[str, str]] = []
    bar = context.progress_bar("explore similar")
    try:
        vectors = folder_descriptors(model, layer, paths, size=size, cache=cache, progress=bar, skipped=skipped)
    finally:
        bar.close()
    report_skipped(skipped)
    unreadable = {path for path, _ in skipped}
    paths = [path for path in paths if str(path) not in unreadable]
    if not paths:
        raise ParameterError(f'"folder" holds no readable image. Received: folder={folder!r}', param="folder", value=folder)
    feature = model.feature_model([layer])
    query_image = load_work_image(query_path, size, model.min_size, getattr(model, "fixed_input", None))
    query = descriptor(np.asarray(feature(query_image[None], training=False)[0][0], np.float32))
    order, similarities = rank(query, vectors)
    shown = list(zip(order[:top], similarities[:top]))
    matches = tuple(Match(place, float(similarity), paths[index]) for place, (index, similarity) in enumerate(shown, start=1))
    sheet = None
    if values["output"]:
        tile = 160
        tiles = [label_tile(resize(query_image, tile, tile), f"query  {query_path.name}")]
        for index, similarity in shown:
            tiles.append(label_tile(resize(load_work_image(paths[index], size, model.min_size), tile, tile), f"{similarity:.3f}  {paths[index].name}"))
        guard.save_image(values["output"], grid(tiles), what="contact sheet (-o)")
        sheet = Path(values["output"])
    return SimilarResult(query_path, layer, matches, sheet, tuple(skipped))


def render_similar(result: SimilarResult, values: Mapping[str, Any]) -> int:
    """Print the ranking, most similar first, and the sheet written."""
    for match in result.matches:
        print(f"{match.rank:>3}. {match.similarity:.4f}  {match.path}")
    if result.sheet is not None:
        print(f"wrote {values['output']}")
    return 0
