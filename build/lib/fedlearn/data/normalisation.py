"""How raw data becomes what the model sees: a declared :class:`Normalisation`.

``Normalisation(divide_by, mean, std)`` means ``(x / divide_by - mean) / std``, per channel
(images) or per feature (tables). It is a value the data scientist *declares*: in-process
runs apply it with :func:`normalise`, and on a Datasite it is written into the code request
the owner reviews (and sees, in words), and the approved code applies it to whatever the
owner uploaded — uint8 or float images, float features. Both run the same function,
:func:`fedlearn.portable.normalise`, so the two give the same tensors.

MNIST's is :data:`MNIST_NORMALISATION`: pixels / 255, then the data set's mean 0.1307 and
std 0.3081. A table whose features are already standardised needs ``Normalisation()``
(divide by 1, subtract 0, divide by 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedlearn.config import ConfigError
from fedlearn.portable import normalise as _portable_normalise


def _floats(value, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"normalisation.{name}", f"must be a number or a non-empty tuple of "
                          f"numbers, one per channel (got {value!r})")
    floats = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in floats):
        raise ConfigError(f"normalisation.{name}", f"must be finite (got {value!r})")
    return floats


@dataclass(frozen=True)
class Normalisation:
    """``(x / divide_by - mean) / std``, per channel (or per feature, for tables)."""

    divide_by: float = 1.0  # 255.0 for uint8 pixels; 1.0 for data already in [0, 1] or floats
    mean: tuple[float, ...] = (0.0,)  # one value for every channel, or one per channel
    std: tuple[float, ...] = (1.0,)  # as many as mean; each > 0

    def __post_init__(self):
        (divide_by,) = _floats(self.divide_by, "divide_by")
        mean, std = _floats(self.mean, "mean"), _floats(self.std, "std")
        if divide_by <= 0:
            raise ConfigError("normalisation.divide_by", f"must be > 0 (got {divide_by!r})")
        if len(mean) != len(std):
            raise ConfigError("normalisation.std", f"needs as many values as mean ({len(mean)}),"
                              f" got {len(std)}")
        if min(std) <= 0:
            raise ConfigError("normalisation.std", f"every std must be > 0 (got {std})")
        for name, value in (("divide_by", divide_by), ("mean", mean), ("std", std)):
            object.__setattr__(self, name, value)

    def as_literal(self) -> tuple[float, tuple[float, ...], tuple[float, ...]]:
        """(divide_by, mean, std) as plain Python values: what a code request carries."""
        return (self.divide_by, self.mean, self.std)

    def describe(self) -> str:
        """The normalisation in words, as the owner's review shows it."""
        return (f"x / {self.divide_by:g}, then minus mean {_shown(self.mean)}, divided by std "
                f"{_shown(self.std)}, per channel (per feature for tables)")


def _shown(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


MNIST_NORMALISATION = Normalisation(divide_by=255.0, mean=(0.1307,), std=(0.3081,))


def check_normalisation(value) -> Normalisation:
    """``value`` if it is a :class:`Normalisation`, else a clear error."""
    if not isinstance(value, Normalisation):
        raise ConfigError("normalisation", "must be a fedlearn.data.Normalisation(divide_by, "
                          f"mean, std) (got {type(value).__name__})")
    return value


def normalise(x: torch.Tensor, normalisation: Normalisation) -> torch.Tensor:
    """``x`` as the model sees it: float32, (N, H, W) images given a channel axis.

    ``x``: (N, H, W) or (N, C, H, W) images (uint8 or float), or (N, F) features. The same
    function the approved code on a Datasite applies (:func:`fedlearn.portable.normalise`).
    """
    normalisation = check_normalisation(normalisation)
    try:
        return _portable_normalise(x, *normalisation.as_literal())
    except ValueError as exc:
        raise ConfigError("normalisation", str(exc)) from exc
