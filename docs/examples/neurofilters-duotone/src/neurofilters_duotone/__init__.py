"""Example neurofilters plugin: maps luminance onto a two-colour ramp."""
