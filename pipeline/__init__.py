"""sceneseg's engine: scenes in, blended masks and GIS-ready polygons out.

A pure core (``grid``, ``blend``, ``polygons``) and I/O at the edges (``scene``, ``read``, ``write``,
``gpkg``). This package never imports Prefect: the flows in ``flows/`` order its stages.
"""

import os

__version__ = "0.1.0"

# GDAL's block cache defaults to 5 % of RAM and keeps decoded scene tiles until it is full, so resident
# memory would grow with the scene up to that size (measured: 256 MB still added 190 MB between 4096^2
# and 8192^2 scenes; 64 MB did not, at the same speed). Blocks are read once plus a thin halo, so a
# small cache loses nothing; GDAL reads this when it first uses the cache. Users can still set their own.
os.environ.setdefault("GDAL_CACHEMAX", "64")
