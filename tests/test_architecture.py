"""The layering of the code: import-linter contracts (pyproject.toml) and one docstring per room."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    return subprocess.run([command, "--config", str(config)], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_import_contracts_are_kept() -> None:
    """The host never imports filters or Keras; rooms are layered; filters use the public API; GIMP's
    registration stays light; no cycles."""
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The check can fail: forbidding what the code really does (the CLI imports the core) breaks it."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["neurofilters"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        'name = "cli must not import core"\ntype = "forbidden"\n'
        'source_modules = ["neurofilters.plugin_host.cli"]\nforbidden_modules = ["neurofilters.plugin_host.core"]\n'
    )
    result = _lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_every_room_says_what_it_owns_in_one_line() -> None:
    for init in sorted((ROOT / "plugin_host").rglob("__init__.py")):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring, f"{init} needs a docstring"
        assert docstring.splitlines()[0].endswith("."), f"{init}: the first line says what the room owns"


def test_public_api_lists_its_names() -> None:
    import neurofilters
    import neurofilters.plugin_host as host

    for module in (neurofilters, host):
        assert len(set(module.__all__)) == len(module.__all__), f"{module.__name__}.__all__ lists a name twice"
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name} is listed in __all__ but missing"
