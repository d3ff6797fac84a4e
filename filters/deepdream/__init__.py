"""DeepDream: the declaration lives in :mod:`.plugin`, the algorithm in :mod:`.engine`."""
