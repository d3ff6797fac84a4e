"""neurofilters' GIMP 3 plug-in: ``neurofilters.py``, the file GIMP runs (standard library and GObject only).

Nothing here is imported by the project: ``neurofilters gimp install``
(:mod:`neurofilters.plugin_host.gimp.installer`) copies the plug-in file into a
GIMP profile, where GIMP's own Python runs it.
"""
