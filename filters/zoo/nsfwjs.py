"""InceptionV3 offline: the ``inception-v3-nsfwjs`` zoo entry, converted from the npm package ``nsfwjs``.

``nsfwjs`` 4.3.0 (MIT) ships ``dist/models/inception_v3/``: a TensorFlow.js layers
model (a Keras 2.2.4 config) whose weights are uint8-quantised and stored as
base64 strings inside six ``group1-shardNof6.min.js`` files, the manifest in
``model.min.js`` (a JavaScript object literal, not JSON). Its training started
from Keras' ImageNet InceptionV3 and froze everything before ``conv2d_56``, so
``mixed0`` ... ``mixed5`` hold the ImageNet weights (quantised: the step is about
9 % of a kernel's standard deviation) and ``mixed6`` ... ``mixed10`` were
fine-tuned on other data. Its five-class head is dropped: the zoo entry is a
backbone without ImageNet classes.

:func:`fetch_inception_v3_nsfwjs` obtains the package tarball (``npm pack``
where npm exists, else the registry's tarball over HTTPS, or a file the user
already has), checks its sha256, dequantises the weights (``min + scale * q``)
into ``keras.applications.InceptionV3(weights=None, include_top=False)`` and
saves the network as a ``.keras`` file in the zoo's cache folder, beside a
sidecar recording both files' hashes. :func:`load_inception_v3_nsfwjs` loads
that file in Keras' safe mode; it never downloads.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neurofilters.plugin_host import ModelUnavailableError, ParameterError

from .cache import cache_dir, file_sha256
from .model import ZooModel
from .preprocessing import unit_range

if TYPE_CHECKING:
    import keras

__all__ = [
    "MODEL_NAME",
    "NSFWJS_SHA256",
    "NSFWJS_VERSION",
    "WEIGHTS_STORY",
    "convert_tarball",
    "converted_model_path",
    "fetch_inception_v3_nsfwjs",
    "load_inception_v3_nsfwjs",
    "parse_js_literal",
    "read_tfjs_weights",
]

MODEL_NAME = "inception-v3-nsfwjs"
NSFWJS_VERSION = "4.3.0"
#: sha256 of ``nsfwjs-4.3.0.tgz`` as the npm registry serves it (its sha512
#: integrity is ``WTKDte0vp1X97N1h...``).
NSFWJS_SHA256 = "4496790efc9bdc6f3e85a826a8e482c1fa1e9db4b3d18c095e98cc0c73cfb12f"
NSFWJS_TARBALL_URL = f"https://registry.npmjs.org/nsfwjs/-/nsfwjs-{NSFWJS_VERSION}.tgz"
#: Raise it when the conversion changes: older cached files are then converted again.
CONVERSION_VERSION = 1
WEIGHTS_STORY = "ImageNet weights through mixed5 (quantised), later layers fine-tuned on other data; no ImageNet classes"
_MODEL_DIR = "package/dist/models/inception_v3/"
_MAX_MEMBER_BYTES = 64 << 20  # the largest shard is 5.6 MB; refuse anything absurd before reading it
_DREAM_LAYERS = tuple(f"mixed{index}" for index in range(11))
_IMAGENET_LAYERS = frozenset(_DREAM_LAYERS[:6])


@dataclass(frozen=True)
class QuantisedWeight:
    """One entry of a TensorFlow.js weights manifest."""

    name: str
    shape: tuple[int, ...]
    minimum: float
    scale: float


def converted_model_path() -> Path:
    """Where the converted network lives: ``<cache>/inception-v3-nsfwjs-v<N>.keras``."""
    return cache_dir() / f"{MODEL_NAME}-v{CONVERSION_VERSION}.keras"


def _sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + ".json")


# --- reading the package ----------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<bool>!0|!1)
      | (?P<word>[A-Za-z_$][\w$]*)
      | (?P<punct>[{}\[\]:,])
    )""",
    re.VERBOSE,
)


def parse_js_literal(text: str, start: int = 0) -> tuple[Any, int]:
    """Parse the JavaScript object literal a minifier wrote at ``text[start:]``.

    Handles what the TensorFlow.js model files use: objects with bare or quoted
    keys, arrays, double-quoted strings, numbers such as ``.5``, ``!0``/``!1``
    for ``true``/``false``, and ``null``.

    Returns:
        The value and the index just past it.

    Raises:
        ValueError: Something else (the file is not what nsfwjs 4.3.0 ships).
    """

    def token(position: int) -> tuple[str, str, int]:
        match = _TOKEN.match(text, position)
        if match is None:
            raise ValueError(f"unexpected text at offset {position}: {text[position:position + 40]!r}")
        kind = match.lastgroup or ""
        return kind, match.group(kind), match.end()

    def value(position: int) -> tuple[Any, int]:
        kind, word, position = token(position)
        if kind == "string":
            return json.loads(word), position
        if kind == "number":
            number = float(word)
            return (int(number) if re.fullmatch(r"-?\d+", word) else number), position
        if kind == "bool":
            return word == "!0", position
        if kind == "word" and word in ("null", "true", "false"):
            return {"null": None, "true": True, "false": False}[word], position
        if word == "[":
            items: list[Any] = []
            kind, word, after = token(position)
            if word == "]":
                return items, after
            while True:
                item, position = value(position)
                items.append(item)
                kind, word, position = token(position)
                if word == "]":
                    return items, position
                if word != ",":
                    raise ValueError(f"expected ',' or ']' at offset {position}")
        if word == "{":
            mapping: dict[str, Any] = {}
            kind, word, after = token(position)
            if word == "}":
                return mapping, after
            while True:
                kind, key, position = token(position)
                if kind not in ("word", "string"):
                    raise ValueError(f"expected a key at offset {position}")
                key = json.loads(key) if kind == "string" else key
                kind, colon, position = token(position)
                if colon != ":":
                    raise ValueError(f"expected ':' at offset {position}")
                mapping[key], position = value(position)
                kind, word, position = token(position)
                if word == "}":
                    return mapping, position
                if word != ",":
                    raise ValueError(f"expected ',' or '}}' at offset {position}")
        raise ValueError(f"unexpected {word!r} at offset {position}")

    return value(start)


def _read_members(tarball: Path) -> dict[str, bytes]:
    """The InceptionV3 model's files from the package tarball, by base name."""
    members: dict[str, bytes] = {}
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            if not member.isfile() or not member.name.startswith(_MODEL_DIR):
                continue
            if member.size > _MAX_MEMBER_BYTES:
                raise ValueError(f"{member.name} is {member.size:,} bytes, more than a model file of nsfwjs holds")
            handle = archive.extractfile(member)
            if handle is not None:
                members[member.name[len(_MODEL_DIR):]] = handle.read()
    return members


def _module_export(source: str, what: str) -> tuple[Any, int]:
    """The value a browserified ``.min.js`` module assigns to ``module.exports``."""
    match = re.search(r"\{1:\[function\([\w$]*,([\w$]+),[\w$]*\)\{\1\.exports=", source)
    if match is None:
        raise ValueError(f"{what}: no 'module.exports=' found; not a TensorFlow.js model file of nsfwjs")
    return parse_js_literal(source, match.end())


def read_tfjs_weights(tarball: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read nsfwjs' InceptionV3 from its package tarball and dequantise every weight.

    Args:
        tarball: ``nsfwjs-4.3.0.tgz``.

    Returns:
        The Keras 2 model topology (a dict) and ``"layer/variable"`` -> float32 array.

    Raises:
        ValueError: The tarball lacks the model or its files are not as expected.
    """
    members = _read_members(Path(tarball))
    if "model.min.js" not in members:
        raise ValueError(f"no {_MODEL_DIR}model.min.js in the tarball; is it nsfwjs {NSFWJS_VERSION}?")
    model, _ = _module_export(members["model.min.js"].decode("utf-8"), "model.min.js")
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        chunks = []
        for path in group["paths"]:
            name = f"{path}.min.js"
            if name not in members:
                raise ValueError(f"the tarball lacks the weight shard {_MODEL_DIR}{name}")
            encoded, _ = _module_export(members[name].decode("ascii"), name)
            chunks.append(base64.b64decode(encoded, validate=True))
        buffer = b"".join(chunks)
        offset = 0
        for entry in group["weights"]:
            quantisation = entry.get("quantization") or {}
            if quantisation.get("dtype") != "uint8":
                raise ValueError(f"{entry['name']}: expected uint8 quantisation, found {quantisation or 'none'}")
            weight = QuantisedWeight(entry["name"], tuple(entry["shape"]), float(quantisation["min"]), float(quantisation["scale"]))
            count = int(np.prod(weight.shape, dtype=np.int64))
            if offset + count > len(buffer):
                raise ValueError(f"the shards end inside {weight.name} ({len(buffer):,} bytes)")
            codes = np.frombuffer(buffer, dtype=np.uint8, count=count, offset=offset)
            offset += count
            weights[weight.name] = (weight.minimum + weight.scale * codes.astype(np.float64)).astype(np.float32).reshape(weight.shape)
        if offset != len(buffer):
            raise ValueError(f"the shards hold {len(buffer) - offset:,} bytes more than the manifest describes")
    return model["modelTopology"], weights


# --- conversion ---------------------------------------------------------------------------------


def _creation_order(network: keras.Model, prefix: str) -> list[Any]:
    """The network's layers named ``prefix`` or ``prefix_N``, in the order they were created."""
    numbered = []
    for layer in network.layers:
        match = re.fullmatch(rf"{prefix}(?:_(\d+))?", layer.name)
        if match:
            numbered.append((int(match.group(1) or 0), layer))
    return [layer for _, layer in sorted(numbered, key=lambda pair: pair[0])]


def build_network(weights: dict[str, np.ndarray] | None = None) -> keras.Model:
    """``keras.applications.InceptionV3(weights=None, include_top=False)``, any input size, with ``weights`` set.

    Keras 2.2.4 and Keras 3 create InceptionV3's layers in the same order, so
    nsfwjs' ``conv2d_K`` / ``batch_normalization_K`` are the K-th convolution /
    batch normalisation Keras creates; every shape is checked.

    Raises:
        ValueError: A weight is missing or has another shape.
    """
    import keras

    from .applications import _rename_automatic_names

    network = keras.applications.InceptionV3(weights=None, include_top=False, input_shape=(None, None, 3))
    if weights is not None:
        convolutions = _creation_order(network, "conv2d")
        norms = _creation_order(network, "batch_normalization")
        if len(convolutions) != 94 or len(norms) != 94:
            raise ValueError(f"expected 94 convolutions and 94 batch normalisations, found {len(convolutions)} and {len(norms)}")
        for index, (conv, norm) in enumerate(zip(convolutions, norms), start=1):
            _assign(conv, [weights[f"conv2d_{index}/kernel"]])
            _assign(norm, [weights[f"batch_normalization_{index}/{variable}"] for variable in ("beta", "moving_mean", "moving_variance")])
    _rename_automatic_names(network)
    return network


def _assign(layer: Any, arrays: list[np.ndarray]) -> None:
    expected = [tuple(variable.shape) for variable in layer.weights]
    if expected != [array.shape for array in arrays]:
        raise ValueError(f"{layer.name}: nsfwjs has shapes {[array.shape for array in arrays]}; Keras expects {expected}")
    layer.set_weights(arrays)


def convert_tarball(tarball: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Convert nsfwjs' InceptionV3 into a Keras ``.keras`` file (written atomically).

    Raises:
        ValueError: The tarball is not the expected package.
    """
    topology, weights = read_tfjs_weights(tarball)
    if topology.get("model_config", {}).get("class_name") != "Model":
        raise ValueError("the model topology is not a Keras functional model")
    network = build_network(weights)
    target = Path(target)
    temporary = target.with_name(f".{target.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.keras")
    try:
        network.save(temporary)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


# --- fetching -----------------------------------------------------------------------------------


def _npm_pack(folder: Path) -> Path:
    """``npm pack nsfwjs@4.3.0`` in ``folder``; returns the tarball."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    done = subprocess.run(
        [npm, "pack", f"nsfwjs@{NSFWJS_VERSION}", "--silent"],
        cwd=folder, capture_output=True, text=True, timeout=600, check=False,
    )
    tarball = folder / f"nsfwjs-{NSFWJS_VERSION}.tgz"
    if done.returncode != 0 or not tarball.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"npm pack failed (exit {done.returncode}): {last}")
    return tarball


def _https_download(folder: Path) -> Path:
    """The registry's tarball over HTTPS (standard library only)."""
    import urllib.request

    tarball = folder / f"nsfwjs-{NSFWJS_VERSION}.tgz"
    with urllib.request.urlopen(NSFWJS_TARBALL_URL, timeout=60) as response, open(tarball, "wb") as handle:  # noqa: S310 - fixed https URL
        shutil.copyfileobj(response, handle, 1 << 20)
    return tarball


def fetch_inception_v3_nsfwjs(source: str | os.PathLike[str] | None = None, *, log: Any = print) -> Path:
    """Obtain nsfwjs 4.3.0, convert its InceptionV3 and cache it (the ``models fetch`` action).

    Args:
        source: A copy of ``nsfwjs-4.3.0.tgz`` the user already has; ``None``
            downloads it (``npm pack`` where npm is installed, else HTTPS).
        log: Receives one line per step.

    Returns:
        The cached ``.keras`` file.

    Raises:
        ParameterError: ``source`` is missing or is not nsfwjs 4.3.0 (checksum).
        ModelUnavailableError: The download failed.
    """
    target = converted_model_path()
    with tempfile.TemporaryDirectory(prefix="neurofilters-nsfwjs-") as scratch:
        folder = Path(scratch)
        if source is not None:
            tarball = Path(source).expanduser()
            if not tarball.is_file():
                raise ParameterError(
                    f'"--from" must be an existing nsfwjs-{NSFWJS_VERSION}.tgz file. Received: --from {os.fspath(source)!r}',
                    param="from", value=os.fspath(source),
                )
            where = os.fspath(tarball)
        else:
            errors = []
            tarball = None
            for name, method in (("npm pack", _npm_pack), ("HTTPS", _https_download)):
                log(f"Downloading nsfwjs {NSFWJS_VERSION} ({name})...")
                try:
                    tarball = method(folder)
                    break
                except FileNotFoundError:
                    errors.append(f"{name}: npm is not installed")
                except (OSError, subprocess.SubprocessError) as error:
                    errors.append(f"{name}: {error}")
            if tarball is None:
                raise ModelUnavailableError(
                    f"Could not download nsfwjs {NSFWJS_VERSION} ({'; '.join(errors)}). On a connected machine run "
                    f"'npm pack nsfwjs@{NSFWJS_VERSION}' (or download {NSFWJS_TARBALL_URL}), then: "
                    f"neurofilters models fetch {MODEL_NAME} --from nsfwjs-{NSFWJS_VERSION}.tgz"
                )
            where = NSFWJS_TARBALL_URL
        digest = file_sha256(tarball)
        if digest != NSFWJS_SHA256:
            raise ParameterError(
                f"{where} is not nsfwjs {NSFWJS_VERSION}: its sha256 is {digest}, expected {NSFWJS_SHA256}. "
                f"Use the registry's nsfwjs-{NSFWJS_VERSION}.tgz ('npm pack nsfwjs@{NSFWJS_VERSION}').",
                param="from", value=where,
            )
        log(f"Converting its InceptionV3 (dequantising 188 layers) into {target} ...")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            convert_tarball(tarball, target)
        except (ValueError, KeyError, tarfile.TarError) as error:
            raise ModelUnavailableError(f"Converting {where} failed: {type(error).__name__}: {error}") from error
    sidecar = {"format": 1, "source": where, "nsfwjs": NSFWJS_VERSION, "tarball_sha256": NSFWJS_SHA256,
               "conversion": CONVERSION_VERSION, "sha256": file_sha256(target), "size": target.stat().st_size}
    temporary = _sidecar_path(target).with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.json")
    temporary.write_text(json.dumps(sidecar, indent=1), encoding="utf-8")
    os.replace(temporary, _sidecar_path(target))
    log(f"Done: --model {MODEL_NAME} ({WEIGHTS_STORY}).")
    return target


# --- loading ------------------------------------------------------------------------------------


def _check_cached(path: Path) -> None:
    fix = f"Run: neurofilters models fetch {MODEL_NAME}"
    if not path.is_file():
        raise ModelUnavailableError(
            f"Model {MODEL_NAME!r} has not been fetched yet ({path} does not exist). {fix} "
            f"(it downloads the npm package nsfwjs {NSFWJS_VERSION}, 25 MB, with npm or HTTPS; "
            f"--from FILE takes a nsfwjs-{NSFWJS_VERSION}.tgz you already have)."
        )
    try:
        sidecar = json.loads(_sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        sidecar = {}
    if sidecar.get("size") != path.stat().st_size or sidecar.get("sha256") != file_sha256(path):
        raise ModelUnavailableError(f"The cached {path} is incomplete or was changed since it was converted. {fix} again.")


def load_inception_v3_nsfwjs() -> ZooModel:
    """The ``inception-v3-nsfwjs`` zoo entry: the converted network, loaded in safe mode.

    Raises:
        ModelUnavailableError: Not fetched yet, or the cached file is damaged.
    """
    import keras

    path = converted_model_path()
    _check_cached(path)
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        raise ModelUnavailableError(
            f"Loading {path} failed ({type(error).__name__}: {error}). Run: neurofilters models fetch {MODEL_NAME}"
        ) from error
    return inception_v3_nsfwjs_zoo_model(network)


def inception_v3_nsfwjs_zoo_model(network: keras.Model) -> ZooModel:
    """Wrap a network from :func:`build_network` as the ``inception-v3-nsfwjs`` zoo model."""
    notes = {
        layer: "ImageNet (quantised)" if layer in _IMAGENET_LAYERS else "fine-tuned on other data"
        for layer in _DREAM_LAYERS
    }
    return ZooModel(
        name=MODEL_NAME,
        kind="backbone",
        keras_model=network,
        preprocess=unit_range,
        min_size=75,
        input_size=299,
        default_dream_layers=(("mixed3", 1.0), ("mixed5", 1.0)),
        dream_targets=_DREAM_LAYERS,
        recommended=("mixed2", "mixed3", "mixed4", "mixed5"),
        layer_notes=notes,
        preprocessing="RGB [0, 1] as is (nsfwjs' convention: its batch-normalisation statistics were re-estimated on it)",
        description=f"InceptionV3 from the npm package nsfwjs {NSFWJS_VERSION}: {WEIGHTS_STORY}.",
    )

