"""Stand-in for ``IPython.display``: lucent imports it for notebook display, which the benchmark never uses."""

from __future__ import annotations

from typing import Any


def _no_display(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("IPython.display is a stand-in in bench/_lucent_standins: the benchmark never displays images.")


display = HTML = _no_display
