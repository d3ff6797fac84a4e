"""neurofilters' GIMP 3 plug-in: the modules GIMP's own Python runs (standard library and GObject only)."""
