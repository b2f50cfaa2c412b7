"""The raster path: a scene's blocks read, inferred, blended and written into its mask.

``scene`` (open and check a scene), ``read`` (windows with mirror padding, normalization), ``infer``
(the model on a device), ``blend`` (overlapping tiles into seamless probabilities, pure array code),
``blocks`` (one block, end to end, as a picklable job), ``execute`` (blocks on Dask), ``journal``
(what a killed run resumes from) and ``write`` (the working store and the published COGs).
"""
