"""One place that builds a model from its architecture name and options (as stored in a ModelCard)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from models.errors import ConfigError
from models.unet import UNet
from models.unetpp import UNetPlusPlus

__all__ = ["create_model", "available_models"]

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "unetpp": UNetPlusPlus,
}


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
