"""Checking the explorer commands' numeric arguments (errors name the flag and the value received)."""

from __future__ import annotations

from neurofilters.plugin_host import ParameterError

__all__ = ["positive_int"]


def positive_int(name: str, value: str, minimum: int = 1) -> int:
    """``value`` as an integer >= ``minimum``, or a :class:`ParameterError` naming the flag."""
    try:
        number = int(value)
        if number < minimum:
            raise ValueError
    except (TypeError, ValueError):
        raise ParameterError(f'"{name}" must be an integer >= {minimum}. Received: {name}={value}', param=name, value=value) from None
    return number
