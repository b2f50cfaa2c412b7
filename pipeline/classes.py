"""The classes users read in every mask and layer: their names by id, and the mask's nodata value.

A model may have classes of its own (an instance model's building boundary and contact gap); they are
folded into these before anything is published (``pipeline.vectors.instances.fold_lut``).
"""

from __future__ import annotations

__all__ = ["USER_CLASSES", "NODATA"]

#: The classes of the mask users read, by id, whatever the model's own classes.
USER_CLASSES: tuple[str, ...] = ("background", "building", "road")
#: Mask value written where the scene itself has no data.
NODATA = 255
