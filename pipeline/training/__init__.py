"""Training on labelled scenes, which reads scenes through the engine.

``data`` (tiles of GeoTIFFs with targets rasterized on the fly from vector labels, area splits) and
``train`` (the loop, validation, checkpoints); ``banepa`` and ``demo`` are the scripts that trained the
packaged models.
"""
