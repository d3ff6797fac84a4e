"""Checking the explorer commands' numeric arguments (errors name the flag and the value received)."""

from __future__ import annotations

from neurofilters.plugin_host import ParameterError, parse_int

__all__ = ["positive_int"]


def positive_int(name: str, value: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an integer from ``minimum`` to ``maximum``, or a :class:`ParameterError` naming the flag.

    The host's integer parsing: control characters and absurdly long numbers are refused too.
    """
    try:
        return parse_int(value, name, minimum, maximum)
    except ParameterError:
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ParameterError(f'"{name}" must be an integer {bound}. Received: {name}={str(value)[:100]}',
                             param=name.replace("-", "_"), value=value) from None
