"""Declarations and registry: parameters, filter/model specs, hookspecs, the plugin manager, the filter context and the one host/filter call."""
