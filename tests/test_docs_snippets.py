"""Every code example in the docs marked ``<!-- test: run -->`` runs.

The convention: an HTML comment ``<!-- test: run -->`` on the line before a
```` ```python ```` or ```` ```bash ```` block (invisible on the site) makes the
block a test. It runs in a scratch folder holding ``photo.jpg`` (a 128 px sample
photo), ``notes.txt`` and ``photos/`` (two photos; see ``docs/generated.py``).
Python blocks run in this process, each with fresh globals. A bash block
whose every line is a ``neurofilters ...`` command runs those commands through
the command's entry point (``plugin_host.cli.main.main``) in this process, so
TensorFlow and the models load once (each must exit 0); any other bash block
runs with ``bash -e`` and a ``neurofilters`` command on ``PATH`` that is this
interpreter's ``python -m neurofilters``. Keep marked examples small.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))

import generated  # noqa: E402  (docs/generated.py)

MARKED_RE = re.compile(r"<!-- test: run -->\n```(?P<lang>python|bash|sh)\n(?P<code>.*?)\n```", re.S)


def _snippets() -> list[pytest.param]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text()
        for match in MARKED_RE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            name = f"{page.relative_to(DOCS)}:{line}"
            found.append(pytest.param(match.group("lang"), match.group("code"), id=name))
    return found


SNIPPETS = _snippets()


def test_the_docs_have_runnable_examples() -> None:
    """The marker is in use (a renamed marker would otherwise silently test nothing)."""
    languages = {param.values[0] for param in SNIPPETS}
    assert len(SNIPPETS) >= 4 and {"python", "bash"} <= languages, SNIPPETS


def test_the_marker_pattern_finds_a_block() -> None:
    text = "intro\n<!-- test: run -->\n```python\nprint(1)\n```\n\n```python\nnot marked\n```\n"
    assert [m.group("code") for m in MARKED_RE.finditer(text)] == ["print(1)"]


@pytest.mark.slow
@pytest.mark.parametrize(("lang", "code"), SNIPPETS)
def test_example_runs(lang: str, code: str, tmp_path: Path) -> None:
    with generated.scratch_folder() as folder:
        if lang == "python":
            exec(compile(code, "<docs example>", "exec"), {"__name__": "__docs__"})  # noqa: S102
            return
        commands = [line for line in code.splitlines() if line.strip()]
        if all(line.split()[0] == "neurofilters" for line in commands):
            for line in commands:
                output = generated.run_cli(" ".join(shlex.split(line, comments=True)[1:]), folder)
                assert "[exit status" not in output.splitlines()[-1], output
            return
        shim = tmp_path / "bin" / "neurofilters"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m neurofilters "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
        env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}",
               "PYTHONPATH": os.pathsep.join(sys.path)}
        result = subprocess.run(["bash", "-e", "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
