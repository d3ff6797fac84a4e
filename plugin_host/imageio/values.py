"""Images given as values (a path, a NumPy array or a Pillow image), and image parameters loaded by the host.

Every image that reaches a filter, the main input or a second image such as a
guide, a mask or a style sample, goes through :func:`to_loaded_image`: files
through the same safe loader (:func:`~.files.load_image`: EXIF orientation,
every mode, the pixel limit, clear errors), arrays and Pillow images through
the same checks. Filters never open files themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import ImageIOError, ParameterError
from ..core.params import Param, ParamValues
from .files import LoadedImage, load_image, pixels_from_pil

__all__ = ["load_image_file", "to_loaded_image", "load_image_params"]


def _from_array(value: Any, name: str) -> LoadedImage:
    import numpy as np

    array = np.asarray(value)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape[:2]:
        raise ParameterError(
            f'"{name}" must be an image array of shape H x W or H x W x C with C in 1..4. Received: shape={array.shape}',
            param=name,
            value=f"array of shape {array.shape}",
        )
    bit_depth = 8
    if array.dtype == np.bool_:
        pixels = array.astype(np.float32)
    elif array.dtype == np.uint8:
        pixels = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        pixels, bit_depth = array.astype(np.float32) / 65535.0, 16
    elif array.dtype.kind == "f":
        pixels, bit_depth = array.astype(np.float32), 32
        if not np.all(np.isfinite(pixels)):
            raise ParameterError(f'"{name}" contains NaN or infinite values.', param=name, value="array")
        low, high = float(pixels.min()), float(pixels.max())
        if low < -1e-6 or high > 1.0 + 1e-6:
            hint = " (divide by 255 for 8-bit values)" if high <= 255.0 else ""
            raise ParameterError(
                f'"{name}" must hold floats in [0, 1]{hint}. Received: values from {low:g} to {high:g}',
                param=name,
                value="array",
            )
        pixels = np.clip(pixels, 0.0, 1.0)
    else:
        raise ParameterError(
            f'"{name}" must be a float array in [0, 1], uint8 or uint16. Received: dtype={array.dtype}',
            param=name,
            value="array",
        )
    return LoadedImage(np.ascontiguousarray(pixels), bit_depth, None, None, "array", 1, None)


def load_image_file(path: str | os.PathLike[str], *, frame: int = 0, max_pixels: int | None = None) -> LoadedImage:
    """:func:`~.files.load_image`, and GIMP's ``.xcf`` (what ``batch --format xcf`` writes) flattened.

    An XCF's visible layers are composited (masks, opacity and the common modes
    applied, as the batch runner's ``--xcf flatten`` does); its bit depth is kept
    (8, or 16 for 16-bit and float XCFs).

    Raises:
        ImageIOError: The file cannot be read (with the reason).
    """
    if Path(path).suffix.lower() != ".xcf":
        return load_image(path, frame=frame, max_pixels=max_pixels)
    from .layered import composite, read_xcf

    try:
        layered = read_xcf(path, max_pixels=max_pixels)
    except (ImageIOError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - a damaged file is one error
        raise ImageIOError(
            f"Cannot read image '{path}': it is not an XCF file this reader understands ({type(error).__name__}: {error}). "
            "Export it from GIMP as PNG or TIFF."
        ) from None
    pixels = composite(layered, max_pixels=max_pixels, source=path)
    return LoadedImage(pixels, 8 if layered.precision == "u8" else 16, None, None, "XCF", 1, Path(path))


def to_loaded_image(value: Any, *, name: str = "image", max_pixels: int | None = None) -> LoadedImage:
    """Turn a path, a NumPy array or a Pillow image into a :class:`LoadedImage`.

    Args:
        value: A file path (``str`` or ``os.PathLike``), an array (``H x W`` or
            ``H x W x C``, C = 1..4; float in [0, 1], uint8 or uint16) or a
            ``PIL.Image.Image``.
        name: Named in error messages (the parameter, or ``image``).
        max_pixels: Pixel limit for files (see :func:`~.files.load_image`).

    Raises:
        ParameterError: The value is none of these, or not a valid image.
        ImageIOError: The file cannot be read.
    """
    if isinstance(value, LoadedImage):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_image_file(value, max_pixels=max_pixels)
    if type(value).__module__.startswith("PIL.") and hasattr(value, "getbands"):
        value.load()
        pixels, bit_depth, keeps_profile = pixels_from_pil(value)
        profile = value.info.get("icc_profile") if keeps_profile else None
        return LoadedImage(pixels, bit_depth, profile, None, value.format or "PIL", 1, None)
    if hasattr(value, "__array__") or hasattr(value, "shape"):
        return _from_array(value, name)
    raise ParameterError(
        f'"{name}" must be an image: a file path, a NumPy array or a PIL image. Received: {type(value).__name__}',
        param=name,
        value=type(value).__name__,
    )


def load_image_params(
    params: Sequence[Param], values: Mapping[str, Any], *, max_pixels: int | None = None
) -> ParamValues:
    """Load every image parameter of validated ``values`` (paths, arrays, Pillow images) into pixels.

    Args:
        params: The filter's declarations.
        values: Validated values (:func:`~..core.params.validate_params`).
        max_pixels: Pixel limit for files.

    Returns:
        New :class:`~..core.params.ParamValues` (``loaded``) in which each image
        parameter holds float32 ``H x W x C`` pixels in [0, 1] (C = 1..4, as
        loaded) or ``None``. Its ``given`` is that of ``values`` (``None`` for
        a plain mapping: unknown), so the names the user set reach the filter.
        Values already loaded are returned as they are.

    Raises:
        ParameterError: An image parameter cannot be read (naming the
            parameter, the value and the loader's reason).
    """
    if isinstance(values, ParamValues) and values.loaded:
        return values
    loaded = ParamValues(values, values.given if isinstance(values, ParamValues) else None, loaded=True)
    for param in params:
        value = loaded.get(param.name)
        if param.kind == "image" and value is not None:
            try:
                loaded[param.name] = to_loaded_image(value, name=param.name, max_pixels=max_pixels).pixels
            except ImageIOError as error:
                shown = value if isinstance(value, (str, os.PathLike)) else type(value).__name__
                raise ParameterError(
                    f'"{param.name}" must be a readable image. Received: {param.name}={shown} ({error})',
                    param=param.name,
                    value=value,
                ) from None
    return loaded
