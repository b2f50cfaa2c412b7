"""One place that builds a model from its architecture name and options (as stored in a ModelCard)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from models.efficientnet import SIZE_MULTIPLE as _EFF_MULTIPLE
from models.efficientnet import EffUNetLite0
from models.errors import ConfigError
from models.unet import UNet
from models.unetpp import UNetPlusPlus

__all__ = ["create_model", "available_models", "size_multiple"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "unetpp": UNetPlusPlus,
    "effunet-lite0": EffUNetLite0,
}
#: Architectures whose input sides must be a fixed multiple (the rest: 2**depth).
_FIXED_MULTIPLE = {"effunet-lite0": _EFF_MULTIPLE}


def size_multiple(name: str, kwargs: dict[str, Any], default_depth: int = 4) -> int:
    """The multiple tile sides of architecture ``name`` should be (U-Nets: ``2**depth``; Lite0: 32)."""
    if name in _FIXED_MULTIPLE:
        return _FIXED_MULTIPLE[name]
    return 2 ** int(kwargs.get("depth", default_depth))


def available_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the architecture ``name`` with ``kwargs`` (in_channels, num_classes, base_channels, depth, ...).

    Raises:
        ConfigError: unknown name, or an option the architecture does not take.
    """
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"model architecture {name!r} is not known; valid names: {', '.join(available_models())}"
        ) from None
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ConfigError(
            f"model {name!r} does not take option(s) {unknown}; it takes {sorted(accepted)}"
        )
    return cls(**kwargs)
