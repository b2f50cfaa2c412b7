"""sceneseg's engine: scenes in, blended masks and GIS-ready polygons out.

A pure core (``grid``, ``blend``, ``polygons``) and I/O at the edges (``scene``, ``read``, ``write``,
``gpkg``). This package never imports Prefect: the flows in ``flows/`` order its stages.
"""

__version__ = "0.1.0"
