"""sceneseg's engine: scenes in, blended masks and GIS-ready polygons out.

Rooms: ``raster`` (scene, read, infer, blend, blocks, execute, journal, write), ``vectors`` (polygonize,
polygons, centerlines, assemble, stream, layers, gpkg), ``training`` (data, train), and beside them the
values every room shares (``grid``, ``config``, ``errors``), the stages of a run (``stages``), scoring
(``metrics``, ``evaluate``), the inbox (``inbox``) and the synthetic scene generator (``synthetic``).
This package imports ``models`` and never Prefect: the flows in ``flows/`` order its stages.
"""

__version__ = "0.1.0"
