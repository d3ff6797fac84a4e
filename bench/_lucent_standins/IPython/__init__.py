"""Stand-in for IPython, for the lucent peer of bench/bench_lucent.py only (see ../README.md)."""
