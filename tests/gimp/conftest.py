"""Fixtures of the real-GIMP tests: the trixie chroot, an installed plug-in, the registries.

The chroot is built on first use when absent (root only, about 90 s) and
reused afterwards; see ``gimp_chroot.py``. Where it cannot be used (not root,
not Linux) every test here is skipped with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import neurofilters.plugin_host as plugin_host
from gimp_chroot import GimpChroot, ensure_chroot, python_bind_paths, unavailable_reason
from gimp_session import TESTPLUGIN_DIR, GimpSession, describe_failure, plugin_environment


@dataclass
class InstalledGimp:
    """A GIMP profile with the plug-in installed (built-ins plus the test plugin).

    Attributes:
        session: Runs driver jobs in that profile.
        registry: The registry the manifest was written from.
        builtin_registry: The registry without third-party plugins.
        before_third_party: The ``procedures`` report of the first install (built-ins only).
        after_third_party: The ``procedures`` report after re-installing with the test plugin.
        timings: Lines the plug-in wrote while GIMP registered it (``create NAME MS``).
    """

    session: GimpSession
    registry: Any
    builtin_registry: Any
    before_third_party: dict[str, Any]
    after_third_party: dict[str, Any]
    timings: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def gimp_chroot() -> Iterator[GimpChroot]:
    """The mounted GIMP chroot (built on demand); unmounted at the end of the session."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"real GIMP 3 tests skipped: {reason}")
    root = ensure_chroot()
    chroot = GimpChroot(root, python_bind_paths(sys.executable))
    try:
        yield chroot
    finally:
        chroot.close()


def _apply_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str | None]) -> None:
    for key, value in variables.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def installed_gimp(gimp_chroot: GimpChroot) -> InstalledGimp:
    """Install built-ins only, let GIMP register them, then re-install with the test plugin.

    The second registration happens because the installer bumps the plug-in
    file's modification time: exactly what a user does after installing a
    third-party filter plugin.
    """
    session = GimpSession(gimp_chroot, "nf-gimp-tests")
    timing_inside = f"{session.inside}/registration-times.txt"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _apply_environment(monkeypatch, plugin_environment(with_test_plugin=False))
        plugin_host.reset_registry()
        builtin_registry = plugin_host.build_registry()
        session.install()
        before, process = session.run_job([{"do": "procedures"}])
        assert process.returncode == 0, describe_failure(process, before)

        _apply_environment(monkeypatch, plugin_environment(with_test_plugin=True))
        monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
        plugin_host.reset_registry()
        registry = plugin_host.build_registry()
        session.install()
        after, process = session.run_job([{"do": "procedures"}], env={"NEUROFILTERS_GIMP_TIMING": timing_inside})
        assert process.returncode == 0, describe_failure(process, after)
        plugin_host.reset_registry()
    timing_file = gimp_chroot.host_path(timing_inside)
    timings = timing_file.read_text().splitlines() if timing_file.exists() else []
    return InstalledGimp(session, registry, builtin_registry, before["steps"][0], after["steps"][0], timings)


@pytest.fixture()
def with_test_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entry points on and the test plugin importable, in this process and its children."""
    _apply_environment(monkeypatch, plugin_environment(with_test_plugin=True))
    monkeypatch.syspath_prepend(os.fspath(TESTPLUGIN_DIR))
    plugin_host.reset_registry()
