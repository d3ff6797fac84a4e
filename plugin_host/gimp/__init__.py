"""The GIMP side of the host: the warm worker process that the GIMP 3 plug-in talks to."""
