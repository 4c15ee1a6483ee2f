"""The parts every configuration dataclass is made of.

- :class:`ConfigError` names the field's path (``federation.rounds``), what was wrong and
  what is allowed; the CLI turns the path into the flag the user typed.
- The validators (:func:`require`, :func:`positive_int`, :func:`number`, :func:`choice`)
  are public: the PySyft backend's own configuration uses them too.
- :func:`option` declares a field once: its default, its help text and, where it differs
  from the field's name, its command-line flag. ``fedlearn train``'s flags are generated
  from these fields (:mod:`fedlearn.cli.flags`), so no default is written twice.
- :class:`Section` validates a dataclass when it is built and prefixes an error with the
  section's name.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from fedlearn.errors import FedlearnError

T = TypeVar("T")


class ConfigError(FedlearnError, ValueError):
    """A configuration value is not allowed; ``path`` names it, e.g. ``federation.rounds``."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.detail = message
        super().__init__(f"{path}: {message}")

    def within(self, section: str) -> ConfigError:
        """The same error, its path prefixed with the section holding the field."""
        return ConfigError(f"{section}.{self.path}" if section else self.path, self.detail)


def require(ok: bool, path: str, message: str) -> None:
    if not ok:
        raise ConfigError(path, message)


def positive_int(value: Any, path: str, minimum: int = 1) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
            path, f"must be an integer >= {minimum} (got {value!r})")


def number(value: Any, path: str, low: float, high: float = math.inf, *,
           low_open: bool = False, high_open: bool = False) -> None:
    """A real, finite number in the interval; the message spells the interval out."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    interval = f"{left}{low:g}, {'inf' if high == math.inf else f'{high:g}'}{right}"
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value)
          and (value > low if low_open else value >= low)
          and (value < high if high_open else value <= high))
    require(ok, path, f"must be a finite number in {interval} (got {value!r})")


def choice(value: Any, path: str, allowed: tuple[str, ...]) -> None:
    require(value in allowed, path, f"unknown value {value!r}; allowed: {', '.join(allowed)}")


def registered(registry: Mapping[str, T], name: str, what: str) -> T:
    """``registry[name]``; a name past the config's validation (a bug, a hand-made object) is
    a ValueError naming what is allowed, never a silent default."""
    if name not in registry:
        raise ValueError(f"{what}: unknown {name!r}; allowed: {', '.join(registry)}")
    return registry[name]


def renamed(value: Any, path: str, old: str, new: str, why: str) -> None:
    """Refuse a choice's former name with its new one (names say one thing each)."""
    require(value != old, path, f"{old!r} is now called {new!r} ({why})")


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None = None,
           metavar: str | None = None, choices: tuple[str, ...] | None = None,
           cli: bool = True, default_factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its help text; ``flag`` defaults to ``--field-name``.

    ``cli=False`` keeps a field off the command line (e.g. an internal batch size).
    """
    metadata = {"help": help, "flag": flag, "metavar": metavar, "choices": choices, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Section:
    """Base of the configuration dataclasses: validated once built, errors carry the path."""

    SECTION: ClassVar[str] = ""  # its field in ExperimentConfig ("" for the experiment itself)
    TITLE: ClassVar[str] = ""  # the heading of its flags in ``fedlearn train --help``

    def __post_init__(self) -> None:
        try:
            self.validate()
        except ConfigError as exc:
            raise exc.within(self.SECTION) from None

    def validate(self) -> None:
        """Raise :class:`ConfigError` (with the field's own name) for a value not allowed."""
