"""Texture synthesis and style transfer (Gram matrices): declarations in :mod:`.plugin`, the optimiser in :mod:`.engine`."""
