#!/usr/bin/env python3
"""The file GIMP runs: loads the plug-in's modules beside it and registers one procedure per filter of the manifest."""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import hashlib  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Any, Optional  # noqa: E402


def load_package(directory: Optional[str] = None) -> ModuleType:
    """The plug-in's modules in ``directory`` (default: this file's folder) as one package.

    GIMP runs this file as a script, not as part of a package, so the folder
    is loaded as a package of its own (its modules import each other
    relatively) under a name unique to the folder: nothing is added to
    ``sys.path`` and no top-level module name of GIMP's Python is shadowed.

    Raises:
        ImportError: The folder has no plug-in modules.
    """
    folder = os.path.dirname(os.path.abspath(__file__)) if directory is None else os.path.abspath(directory)
    name = "_neurofilters_gimp_" + hashlib.sha256(os.fsencode(folder)).hexdigest()[:12]
    package = sys.modules.get(name)
    if package is not None:
        return package
    spec = importlib.util.spec_from_file_location(name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    if spec is None or spec.loader is None or not os.path.isfile(os.path.join(folder, "__init__.py")):
        raise ImportError(f"{folder} holds no neurofilters plug-in modules; run 'neurofilters gimp install' again.")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules[name]
        raise
    return package


def load_module(module: str, directory: Optional[str] = None) -> ModuleType:
    """One of the plug-in's modules (``client``, ``manifest``, ``host`` ...) from ``directory``."""
    return importlib.import_module(f"{load_package(directory).__name__}.{module}")


def main() -> None:
    """Run as GIMP's plug-in (GIMP starts this file with its own arguments)."""
    trace, names, procedures = load_module("trace"), load_module("manifest"), load_module("procedure")
    client, host = load_module("client"), load_module("host")
    trace.set_start(STARTED)
    gi = host.load_gi()
    trace.timing("imports")
    Gimp = gi.Gimp

    class NeurofiltersPlugIn(Gimp.PlugIn):
        """One GIMP procedure per filter of the manifest."""

        manifest: Optional[dict[str, Any]] = None
        manifest_error: Optional[str] = None

        def _manifest(self) -> Optional[dict[str, Any]]:
            if self.manifest is None and self.manifest_error is None:
                try:
                    type(self).manifest = names.load_manifest()
                except client.WorkerError as error:
                    type(self).manifest_error = str(error)
            return self.manifest

        def do_set_i18n(self, name: str) -> bool:
            return False

        def do_query_procedures(self) -> list[str]:
            manifest = self._manifest()
            trace.timing("query")
            if manifest is None:
                return [names.PROCEDURE_PREFIX + "setup-problem"]
            return [names.procedure_name(item["name"]) for item in manifest.get("filters", [])]

        def do_create_procedure(self, name: str) -> Any:
            manifest = self._manifest()
            if manifest is None:
                problem = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_setup_problem, None)
                problem.set_image_types("*")
                problem.set_menu_label("neurofilters setup problem...")
                problem.add_menu_path(names.MENU_ROOT)
                problem.set_documentation("Explains why no neural filter is available", self.manifest_error, name)
                problem.set_attribution("neurofilters", "neurofilters", "2025")
                return problem
            info = next((item for item in manifest["filters"] if names.procedure_name(item["name"]) == name), None)
            if info is None:
                return None
            created = procedures.create_filter_procedure(self, name, info, manifest, self.run_filter)
            trace.timing("create " + name)
            return created

        def run_setup_problem(self, procedure: Any, run_mode: Any, image: Any, drawables: Any, config: Any, data: Any) -> Any:
            return host.GimpHost.error(procedure, self.manifest_error or "neurofilters is not set up.")

        def run_filter(self, procedure: Any, run_mode: Any, image: Any, drawables: Any, config: Any, info: Any) -> Any:
            # The dialog and the run are loaded when a filter runs, never at registration.
            return load_module("run").run_filter(procedure, run_mode, image, drawables, config, info, self._manifest())

    Gimp.main(NeurofiltersPlugIn.__gtype__, sys.argv)


if __name__ == "__main__":
    main()
