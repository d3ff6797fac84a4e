"""Feature visualisation shared by filters: objectives (a class, channel, neuron or unit) and the optimisation toward them.

Modules:
    objectives: :class:`~.objectives.Objective` and resolving the user's
        ``class`` / ``layer`` / ``channel`` / ``neuron`` against a zoo model.
    visualize: :func:`~.visualize.visualize`, activation maximisation from noise
        on a :class:`~neurofilters.filters.parameterization.SpectralImage`, with
        its :data:`~.visualize.RECIPES`.

Used by ``hallucinate`` (its filter and canvas) and ``explorer`` (the atlas's
cells). Importing this package is cheap: nothing here imports Keras until an
image is optimised.
"""
