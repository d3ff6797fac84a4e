"""One import package: what ``pip install .`` puts into site-packages, and the package list it comes from."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declared_packages() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_package_folder_is_declared() -> None:
    found = ["neurofilters"]
    for top in ("plugin_host", "filters", "gimp_plugin"):
        for init in sorted((ROOT / top).rglob("__init__.py")):
            if "__pycache__" in init.parts:
                continue
            found.append("neurofilters." + ".".join(init.parent.relative_to(ROOT).parts))
    assert sorted(_declared_packages()) == sorted(found), "add the new package folder to pyproject.toml's packages"


#: The host's own commands (list, describe, models, plugins, gimp) register as a built-in plugin too.
HOST_PLUGIN = {"host": "neurofilters.plugin_host.cli.host_commands"}


def _plugin_modules() -> dict[str, str]:
    """Every built-in plugin module in the checkout, by the entry-point name it must have (its package), and the host's."""
    found = {path.parent.name: f"neurofilters.filters.{path.parent.name}.plugin" for path in (ROOT / "filters").glob("*/plugin.py")}
    return {**found, **HOST_PLUGIN}


def test_every_builtin_plugin_is_an_entry_point() -> None:
    """pyproject.toml declares each filters/*/plugin.py, and this install's metadata says the same."""
    from importlib import metadata

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["neurofilters"]
    assert declared == _plugin_modules(), "declare each filters/NAME/plugin.py as NAME (and the host's commands as host) in [project.entry-points.neurofilters]"
    installed = {ep.name: ep.value for ep in metadata.distribution("neurofilters").entry_points if ep.group == "neurofilters"}
    assert installed == declared, "stale metadata: run '.venv/bin/python -m pip install -e .' again"


def _entry_points(dist_info: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names as written
    parser.read_string((dist_info / "entry_points.txt").read_text())
    return dict(parser["neurofilters"])


@pytest.mark.slow
def test_pip_install_adds_only_the_neurofilters_package(tmp_path: Path) -> None:
    """A clean virtualenv gains exactly ``neurofilters`` and its dist-info, nothing generic like ``filters``."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (os.fsdecode(item) for item in tracked)):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        timeout=600,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    site = Path(
        subprocess.run(
            [env_dir / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )
    before = set(os.listdir(site))
    wheel = next(wheels.glob("neurofilters-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=600,
    )
    added = {name for name in set(os.listdir(site)) - before if name != "__pycache__"}
    assert {name for name in added if not name.endswith(".dist-info")} == {"neurofilters"}
    [dist_info] = [site / name for name in added if name.endswith(".dist-info")]
    # the wheel announces the built-ins the way a third-party plugin announces itself
    assert _entry_points(dist_info) == _plugin_modules()
    installed = {str(path.relative_to(site / "neurofilters")) for path in (site / "neurofilters").rglob("*.py")}
    assert {"__init__.py", "commands.py", "plugin_host/api.py", "filters/deepdream/engine.py", "gimp_plugin/neurofilters.py"} <= installed
    # every module of the GIMP plug-in ships (the installer copies them from the package)
    assert {f"gimp_plugin/{path.name}" for path in (Path(__file__).resolve().parents[1] / "gimp_plugin").glob("*.py")} <= installed
    assert not any(path.startswith(("tests/", "bench/", "docs/")) for path in installed)
