"""The ``saliency`` filter: which pixels made the network say what it said (gradients, CAMs, their guided forms)."""
