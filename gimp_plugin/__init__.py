"""neurofilters' GIMP 3 plug-in and its installer.

``neurofilters.py`` is the plug-in file GIMP runs (standard library and GObject
introspection only); :func:`install` and :func:`uninstall` put it into (and
take it out of) a GIMP profile.
"""

from .installer import default_gimp_dir, install, plugin_dir, uninstall

__all__ = ["default_gimp_dir", "install", "plugin_dir", "uninstall"]
