"""The network explorer: activation maps, feature inversion, receptive fields, top-activating patches, similar images, the atlas."""
