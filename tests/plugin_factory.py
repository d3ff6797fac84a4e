"""Builds small installed distributions on disk, discovered through real entry points.

This is not a mock: ``importlib.metadata`` finds the ``.dist-info`` folder
on ``sys.path`` exactly as it finds a pip-installed package.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_distribution(root: Path, dist: str, plugins: dict[str, str], version: str = "1.0") -> Path:
    """Write modules plus a ``.dist-info`` with ``neurofilters`` entry points.

    Args:
        root: A folder to put on ``sys.path``.
        dist: Distribution name.
        plugins: Entry-point (and module) name -> module source.
        version: Distribution version.

    Returns:
        ``root``.
    """
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[neurofilters]"] + [f"{name} = {name}" for name in plugins]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in plugins.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


GOOD_PLUGIN = '''
from neurofilters.plugin_host import FilterSpec, Param, hookimpl

def run(image, params, context):
    return 1.0 - image if params["invert"] else image

@hookimpl
def register_filters():
    return [FilterSpec(name="{name}", title="T", summary="S.", description="D.", category="Test",
                       params=(Param("invert", "bool", True, "Invert."),), run=run)]
'''
