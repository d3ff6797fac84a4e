"""A real, headless GIMP 3 in a Debian trixie chroot, built on demand.

GIMP 3 (with Python 3 plug-ins) is packaged in Debian 13 "trixie"; the test
machines run Debian 12. This module builds a minimal trixie root with
``debootstrap`` and ``gimp`` in it (about 90 s and 770 MB, once), reuses it
afterwards, and runs ``gimp-console-3.0`` in it, each run in a private mount
namespace where the project's Python environment is bind-mounted read-only at
its host paths (so the GIMP plug-in can start the project's worker). Nothing
is mounted in the host's namespace, so several users can share the chroot.

It needs root (``debootstrap``, ``chroot``, ``mount``). Where that is impossible
:func:`unavailable_reason` says why, and the GIMP tests skip with that text.

Environment variables:
    NEUROFILTERS_GIMP_ROOT: where the chroot lives
        (default ``/var/tmp/neurofilters-gimp-root``).
    NEUROFILTERS_DEBIAN_MIRROR: the Debian mirror for ``debootstrap``
        (default: the first Debian mirror of the host's apt sources, else
        ``http://deb.debian.org/debian``).

Also a command-line tool, for CI and for poking around::

    python tests/gimp/gimp_chroot.py build      # build (or check) the chroot
    python tests/gimp/gimp_chroot.py build --extra xvfb x11-apps netpbm
    python tests/gimp/gimp_chroot.py umount     # stop everything running in it, unmount leftovers
    python tests/gimp/gimp_chroot.py path       # print the root
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = [
    "DEFAULT_ROOT",
    "GIMP_PACKAGES",
    "GimpChroot",
    "ROOT_ENV",
    "chroot_root",
    "ensure_chroot",
    "python_bind_paths",
    "unavailable_reason",
]

ROOT_ENV = "NEUROFILTERS_GIMP_ROOT"
MIRROR_ENV = "NEUROFILTERS_DEBIAN_MIRROR"
DEFAULT_ROOT = Path("/var/tmp/neurofilters-gimp-root")
SUITE = "trixie"
GIMP_PACKAGES: tuple[str, ...] = ("gimp",)
READY_MARKER = ".neurofilters-gimp-ready"
#: Where GIMP finds the interpreter for ``.py`` plug-ins inside the chroot.
INTERP_FILE = "usr/lib/x86_64-linux-gnu/gimp/3.0/interpreters/pygimp.interp"
_BASE_ENV = {
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
}


def chroot_root() -> Path:
    """The chroot's location: ``$NEUROFILTERS_GIMP_ROOT`` or :data:`DEFAULT_ROOT`."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def unavailable_reason() -> str | None:
    """Why a GIMP chroot cannot be used on this machine, or ``None`` if it can.

    A ready chroot still needs root to enter; building one also needs
    ``debootstrap`` (installed with apt-get when missing).
    """
    if not sys.platform.startswith("linux"):
        return f"the GIMP 3 chroot needs Linux; this is {sys.platform}"
    if os.geteuid() != 0:
        return (
            "the GIMP 3 chroot needs root (debootstrap, chroot and bind mounts); "
            f"running as uid {os.geteuid()}. Run the GIMP tests as root, e.g. in CI."
        )
    missing = [name for name in ("chroot", "mount", "unshare") if shutil.which(name) is None]
    if missing:
        return f"the command(s) {', '.join(missing)} are missing (util-linux, coreutils)"
    problem = _mount_problem()
    if problem:
        return problem
    if (chroot_root() / READY_MARKER).is_file():
        return None
    if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
        return "no GIMP chroot is built and neither debootstrap nor apt-get (to install it) is available"
    return None


def _mount_problem() -> str | None:
    """Why this root process cannot mount in a private namespace (a container without CAP_SYS_ADMIN?)."""
    with tempfile.TemporaryDirectory(prefix="nf-mount-probe-") as directory:
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", directory],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return f"root cannot mount in a private namespace here ({result.stderr.strip()}); a container needs CAP_SYS_ADMIN"
    return None


def _host_mirror() -> str:
    """The first Debian (non-security) mirror named in the host's apt sources."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    texts: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    for text in texts:
        for url in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, flags=re.M):
            if "debian" in url and "security" not in url:
                return url
    return "http://deb.debian.org/debian"


def _run(argv: Sequence[str], *, timeout: float = 900, env: Mapping[str, str] | None = None) -> None:
    """Run a build step, raising with its output when it fails."""
    result = subprocess.run(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"Building the GIMP chroot failed: {' '.join(argv)} exited with {result.returncode}:\n"
            + result.stdout[-4000:]
        )


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    prefix = os.fspath(root.resolve())
    points: list[str] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def _is_mount(path: Path) -> bool:
    """Whether ``path`` is a mount point (bind mounts of the same filesystem included)."""
    return os.fspath(Path(path).resolve()) in _mounts_under(Path(path))


def _processes_in(root: Path) -> list[int]:
    """Ids of the processes whose root directory is the chroot (GIMP, its plug-ins, workers)."""
    target = os.fspath(root.resolve())
    pids: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(entry / "root") == target:
                pids.append(int(entry.name))
    return pids


def kill_processes_in(root: Path, *, grace: float = 3.0) -> list[int]:
    """Stop every process running inside the chroot (by id): TERM, then KILL.

    Returns:
        The ids that were signalled.
    """
    return _terminate(_processes_in(root), grace)


def _terminate(pids: list[int], grace: float) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, then SIGKILL the survivors."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def unmount_all(root: Path) -> None:
    """Unmount everything mounted below ``root`` (deepest first).

    Raises:
        RuntimeError: A mount point stays busy.
    """
    for point in _mounts_under(root):
        result = subprocess.run(["umount", point], capture_output=True, text=True)
        if result.returncode != 0:
            # a process we did not see may hold it; detach lazily rather than leaving it mounted
            lazy = subprocess.run(["umount", "-l", point], capture_output=True, text=True)
            if lazy.returncode != 0:
                raise RuntimeError(f"Cannot unmount {point}: {result.stderr.strip()} / {lazy.stderr.strip()}")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``root`` (concurrent test processes build once)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(os.fspath(root) + ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _installed_extras(root: Path) -> set[str]:
    marker = root / READY_MARKER
    if not marker.is_file():
        return set()
    return {line.strip() for line in marker.read_text().splitlines() if line.strip()}


def _apt_install(root: Path, packages: Iterable[str], *, log: bool) -> None:
    env = {**_BASE_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    with _proc_mounted(root):
        _run(["chroot", os.fspath(root), "apt-get", "update", "-q"], env=env)
        _run(
            ["chroot", os.fspath(root), "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
            env=env,
            timeout=1800,
        )
        _run(["chroot", os.fspath(root), "apt-get", "clean"], env=env)
    if log:
        print(f"[gimp-chroot] installed {' '.join(packages)} in {root}", file=sys.stderr)


@contextlib.contextmanager
def _proc_mounted(root: Path) -> Iterator[None]:
    proc = root / "proc"
    mounted = _is_mount(proc)
    if not mounted:
        _run(["mount", "-t", "proc", "proc", os.fspath(proc)])
    try:
        yield
    finally:
        if not mounted:
            subprocess.run(["umount", os.fspath(proc)], check=False)


def ensure_chroot(root: Path | None = None, *, extra_packages: Sequence[str] = (), log: bool = True) -> Path:
    """Return a ready trixie chroot with GIMP 3, building it first if needed.

    A ready chroot (marked by ``.neurofilters-gimp-ready``) is reused; an
    unfinished one (an interrupted build) is completed, reusing what
    ``debootstrap`` left if it finished.

    Args:
        root: Where; defaults to :func:`chroot_root`.
        extra_packages: More Debian packages to have in it (e.g. ``xvfb`` for
            screenshots); installed once, on demand.
        log: Say on stderr what is being built.

    Raises:
        RuntimeError: This machine cannot build it (the reason is in the
            message), or a build step failed (with its output).
    """
    root = Path(root or chroot_root())
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"Cannot provide a GIMP 3 chroot: {reason}")
    with _locked(root):
        extras = _installed_extras(root)
        if (root / READY_MARKER).is_file() and set(extra_packages) <= extras:
            return root
        if not (root / READY_MARKER).is_file():
            _build(root, log=log)
            extras = set()
        missing = [name for name in extra_packages if name not in extras]
        if missing:
            _apt_install(root, missing, log=log)
            (root / READY_MARKER).write_text("\n".join(sorted(extras | set(missing))) + "\n")
    return root


def _build(root: Path, *, log: bool) -> None:
    started = time.monotonic()
    kill_processes_in(root)
    unmount_all(root)
    if not (root / "usr/bin/apt-get").exists() or not (root / "etc/os-release").exists():
        if root.exists():
            shutil.rmtree(root)
        if shutil.which("debootstrap") is None:
            _run(["apt-get", "install", "-y", "-q", "debootstrap"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        mirror = _host_mirror()
        if log:
            print(f"[gimp-chroot] debootstrap {SUITE} from {mirror} into {root} (about 35 s)", file=sys.stderr)
        _run(["debootstrap", "--variant=minbase", SUITE, os.fspath(root), mirror], timeout=1800)
    if log:
        print("[gimp-chroot] installing GIMP 3 (about 40 s)", file=sys.stderr)
    _apt_install(root, GIMP_PACKAGES, log=False)
    if not (root / "usr/bin/gimp-console-3.0").exists():
        raise RuntimeError(f"gimp-console-3.0 is missing from {root} after installing {' '.join(GIMP_PACKAGES)}")
    _pin_python(root / INTERP_FILE)
    (root / READY_MARKER).write_text("")
    if log:
        print(f"[gimp-chroot] ready in {time.monotonic() - started:.0f} s: {root}", file=sys.stderr)


def _pin_python(interp: Path) -> None:
    """Make GIMP run ``.py`` plug-ins with the chroot's own ``/usr/bin/python3``.

    A plug-in's ``#!/usr/bin/env python3`` line would otherwise pick whatever
    ``python3`` comes first on GIMP's PATH.
    """
    old = interp.read_text().splitlines() if interp.is_file() else []
    lines = [line for line in old if not line.startswith(("python=", "python3=", "/usr/bin/python3="))]
    lines += ["python=/usr/bin/python3", "python3=/usr/bin/python3", "/usr/bin/python3=/usr/bin/python3"]
    interp.write_text("\n".join(lines) + "\n")


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def python_bind_paths(python: str = sys.executable, root: Path | None = None) -> list[Path]:
    """Host directories the project's interpreter needs, to bind-mount into the chroot at the same place.

    The interpreter's prefix, its base installation, every ``sys.path``
    entry (editable installs point at the source tree) and every
    ``$PYTHONPATH`` entry with the resolved targets of the links in it (a
    package root holding ``neurofilters -> /path/to/a/checkout`` brings that
    checkout), reduced to the outermost directories.

    Args:
        python: The interpreter.
        root: The chroot (default :func:`chroot_root`); a path that already
            exists in it (other than an empty mount point) cannot be shared.

    Raises:
        RuntimeError: The interpreter needs a path the chroot's own system
            uses, such as ``/usr`` for a Debian system Python: mounting it would
            hide the chroot's files. Use a Python outside ``/usr`` for the
            environment (pyenv, uv, actions/setup-python, conda).
    """
    root = Path(root or chroot_root())
    probe = (
        "import sys, json, os, importlib.util as u;"
        "mods=[u.find_spec(m) for m in ('neurofilters.plugin_host','filters','numpy')];"
        "extra=[os.path.dirname(os.path.dirname(m.origin)) for m in mods if m and m.origin];"
        "print(json.dumps([os.path.realpath(sys.executable), sys.prefix, sys.base_prefix] + sys.path + extra))"
    )
    import json

    output = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout
    candidates = sorted({os.path.realpath(p) for p in json.loads(output) + _pythonpath_targets() if p and os.path.exists(p)})
    paths: list[str] = []
    for candidate in candidates:
        directory = candidate if os.path.isdir(candidate) else os.path.dirname(candidate)
        if not any(_inside(directory, kept) for kept in paths):
            paths = [kept for kept in paths if not _inside(kept, directory)] + [directory]
    for path in paths:
        target = root / path.lstrip("/")
        if target.exists() and not (target.is_dir() and not any(target.iterdir())):
            raise RuntimeError(
                f"The GIMP tests run the project's Python inside a Debian trixie chroot, bind-mounted at "
                f"the same paths; {python} needs {path}, which the chroot's own system uses (mounting it "
                "would hide the chroot's files). Create the virtual environment from a Python outside "
                "/usr (pyenv, uv, actions/setup-python, conda)."
            )
    return [Path(path) for path in paths]


def _pythonpath_targets() -> list[str]:
    """``$PYTHONPATH``'s entries, and where the symbolic links directly inside them point."""
    targets = []
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        targets.append(entry)
        with contextlib.suppress(OSError):
            for child in os.scandir(entry):
                if child.is_symlink():
                    targets.append(os.path.realpath(child.path))
    return targets


#: Environment variable that marks the processes of one :class:`GimpChroot` (GIMP, plug-ins, workers).
SESSION_ENV = "NEUROFILTERS_CHROOT_SESSION"


def _session_processes(marker: str) -> list[int]:
    """Ids of the processes whose environment carries ``SESSION_ENV=marker``."""
    needle = f"{SESSION_ENV}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
    return pids


class GimpChroot:
    """Runs programs (GIMP) in the chroot, each in a private mount namespace.

    Every command gets its own mount namespace (``unshare --mount``) with
    ``/proc``, a ``/dev/shm`` and the ``bind`` directories mounted read-only
    at their host paths, so nothing is mounted in the host's namespace:
    nothing to leak if the tests are killed, and other users of the same
    chroot are undisturbed. A namespace lives as long as its processes, so
    the plug-in's worker (which outlives GIMP on purpose) keeps its mounts.

    Use as a context manager, or call :meth:`close`: it stops the processes
    this object started (found by an environment marker, by id), which
    releases their namespaces and mounts.
    """

    def __init__(self, root: Path, bind: Iterable[Path] = ()) -> None:
        """Prepare the mount points of ``bind`` (host directories) inside ``root``."""
        self.root = Path(root).resolve()
        self.bind = [Path(source).resolve() for source in bind]
        self.marker = uuid.uuid4().hex
        for path in ["proc", "dev/shm", *(os.fspath(source).lstrip("/") for source in self.bind)]:
            (self.root / path).mkdir(parents=True, exist_ok=True)

    def host_path(self, inside: str | os.PathLike[str]) -> Path:
        """The host path of a path inside the chroot."""
        return self.root / Path(inside).relative_to("/")

    def _command(self, argv: Sequence[str], env: Mapping[str, str] | None) -> list[str]:
        variables = {**_BASE_ENV, SESSION_ENV: self.marker, **(env or {})}
        root = shlex.quote(os.fspath(self.root))
        steps = [f"mount -t proc proc {root}/proc", f"mount -t tmpfs -o mode=1777 tmpfs {root}/dev/shm"]
        for source in self.bind:
            target = shlex.quote(os.fspath(self.root) + os.fspath(source))
            steps += [f"mount --bind {shlex.quote(os.fspath(source))} {target}", f"mount -o remount,bind,ro {target}"]
        script = " && ".join(steps) + ' && exec "$@"'
        return [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            "chroot", os.fspath(self.root), "/usr/bin/env", "-i",
            *(f"{key}={value}" for key, value in variables.items()),
            *argv,
        ]  # fmt: skip

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdin: str | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the chroot with a clean environment (plus ``env``); killed after ``timeout`` s."""
        return subprocess.run(
            ["timeout", "-k", "5", str(int(timeout)), *self._command(argv, env)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout + 30,
        )

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
        """Start ``argv`` inside the chroot with a clean environment (plus ``env``); :meth:`close` stops it."""
        return subprocess.Popen(self._command(argv, env), text=True, **kwargs)  # type: ignore[call-overload]

    def gimp_batch(
        self, code: str, *, gimp_dir: str, env: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` in ``gimp-console-3.0``'s batch interpreter.

        Args:
            code: Python source run by ``python-fu-eval`` (``Gimp`` etc. are importable).
            gimp_dir: GIMP's configuration directory inside the chroot (``GIMP3_DIRECTORY``).
            env: More environment variables.
            timeout: Seconds before GIMP is killed.

        Returns:
            The finished process: ``returncode`` 0 when the code ran without an exception.
        """
        return self.run(
            ["gimp-console-3.0", "-i", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"],
            env={"GIMP3_DIRECTORY": gimp_dir, **(env or {})},
            stdin=code,
            timeout=timeout,
        )

    def close(self, *, grace: float = 3.0) -> list[int]:
        """Stop every process this object started (and what they started, such as workers).

        Returns:
            The ids that were signalled.
        """
        return _terminate(_session_processes(self.marker), grace)

    def __enter__(self) -> GimpChroot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the chroot if absent (needs root)")
    build.add_argument("--extra", nargs="*", default=[], help="more Debian packages to install in it")
    sub.add_parser("umount", help="stop processes left in the chroot and unmount everything below it")
    sub.add_parser("path", help="print the chroot's location")
    args = parser.parse_args(argv)
    root = chroot_root()
    if args.command == "path":
        print(root)
    elif args.command == "umount":
        kill_processes_in(root)
        unmount_all(root)
    else:
        print(ensure_chroot(root, extra_packages=args.extra))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
