"""Attribution maps shared by filters: the compiled score steps, the saliency methods, one unit's guided backprop, normalisation.

Modules:
    network: the zoo model rebuilt for attribution (guided rectifiers, a CAM
        layer's activation and a channel or neuron target read inside the graph)
        and :func:`~.network.saliency_step`, its compiled score step.
    methods: the methods (gradient, SmoothGrad, integrated gradients, guided
        backprop, Grad-CAM, Grad-CAM++, guided Grad-CAM) as
        :func:`~.methods.compute`, with :func:`~.methods.upsample` and
        :func:`~.methods.normalise` for their maps.
    neuron: :func:`~.neuron.neuron_guided_backprop`, one unit's guided backprop
        on an image as given, and :func:`~.neuron.layer_output_size`.

Used by ``saliency`` (the filter and ``saliency-check``) and ``explorer``
(``explore patches --maps``, ``atlas --maps``). Importing this package is cheap:
Keras loads with the submodules.
"""
