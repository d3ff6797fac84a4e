"""Stand-in for torchvision, for the lucent peer of bench/bench_lucent.py only (see ../README.md).

No torchvision wheel matches ``torch==2.13.0+cpu`` here: PyPI's 0.28.0 links torch's CUDA
libraries and fails to import. lucent's optimisation code imports only
``torchvision.transforms.Normalize``, which :mod:`torchvision.transforms` provides.
"""
