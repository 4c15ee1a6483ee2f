"""``fedlearn train``'s configuration flags, generated from the config dataclasses.

Each field of a section (:mod:`fedlearn.config`) becomes one flag: ``--field-name`` unless
the field names another, its help text and default taken from the field, so a default is
written once, in the dataclass. A flag not given leaves the field to its dataclass default.
An optional section (DP-FedAvg, DP-SGD, availability) is on when any of its flags is given.

A :class:`~fedlearn.config.ConfigError` names a field's path (``federation.rounds``);
:func:`flag_for` finds the flag a user typed for it, for configuration and run options alike.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from typing import Any

from fedlearn.config import OPTIONAL_SECTIONS, SECTIONS, ExperimentConfig


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _plain_type(hint: Any) -> Any:
    """``int | None`` -> int; ``tuple[str, ...]`` stays; a union with str (a model) -> str."""
    if typing.get_origin(hint) is typing.Literal:  # a choice: its names are strings
        return str
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return str if str in args else _plain_type(args[0])
    return hint


def _help(f: dataclasses.Field, *, shown_default: bool = True) -> str:
    text = f.metadata["help"]
    default = f.default
    if shown_default and default not in (None, dataclasses.MISSING) and "default:" not in text:
        shown = " ".join(default) if isinstance(default, tuple) else default
        text += f" (default: {shown})"
    return text.replace("%", "%%")


def _add_field(group, f: dataclasses.Field, hint: Any, dest: str) -> None:
    kind = _plain_type(hint)
    kwargs: dict[str, Any] = {"dest": dest, "default": argparse.SUPPRESS}
    if not f.metadata.get("cli", True):
        kwargs["help"] = argparse.SUPPRESS
    if kind is bool:
        if f.default is True:  # a switch that is on: its flag turns it off
            group.add_argument("--no-" + _flag(f)[2:], action="store_false",
                               help=_help(f, shown_default=False) + " (on unless this is "
                               "given)", **kwargs)
        else:
            group.add_argument(_flag(f), action="store_true", help=_help(f, shown_default=False),
                               **kwargs)
        return
    if typing.get_origin(kind) is tuple:
        kwargs.update(nargs="+", type=typing.get_args(kind)[0])
    elif kind in (int, float):
        kwargs["type"] = kind
    choices = f.metadata.get("choices")
    metavar = (f.metadata.get("metavar")
               or ("{" + ",".join(choices) + "}" if choices else f.name.upper()))
    kwargs.setdefault("help", _help(f))
    group.add_argument(_flag(f), metavar=metavar, **kwargs)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One argument group per section of :class:`ExperimentConfig`, one flag per field."""
    for name, section in SECTIONS.items():
        group = parser.add_argument_group(section.TITLE)
        hints = typing.get_type_hints(section)
        outer = {f.name: f for f in dataclasses.fields(ExperimentConfig)}[name]
        if outer.metadata.get("flag"):  # the section's own switch, e.g. --availability
            group.add_argument(outer.metadata["flag"], dest=name, action="store_true",
                               default=argparse.SUPPRESS, help=outer.metadata["help"])
        for f in dataclasses.fields(section):  # type: ignore[arg-type]
            _add_field(group, f, hints[f.name], f"{name}.{f.name}")
    group = parser.add_argument_group(ExperimentConfig.TITLE)
    hints = typing.get_type_hints(ExperimentConfig)
    for f in dataclasses.fields(ExperimentConfig):
        if f.name not in SECTIONS:
            _add_field(group, f, hints[f.name], f.name)


def config_from_flags(args: argparse.Namespace, **overrides: Any) -> ExperimentConfig:
    """The :class:`ExperimentConfig` the flags describe; ``overrides`` are field paths
    (``partition.workers``) set by the caller, e.g. from the Datasites' addresses."""
    given = {**vars(args), **overrides}
    sections: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        values = {key.split(".", 1)[1]: value for key, value in given.items()
                  if key.startswith(name + ".")}
        if name in OPTIONAL_SECTIONS and not values and not given.get(name):
            sections[name] = None
        else:
            sections[name] = section(**values)
    top = {f.name: given[f.name] for f in dataclasses.fields(ExperimentConfig)
           if f.name not in SECTIONS and f.name in given}
    return ExperimentConfig(**sections, **top)


def flag_for(parser: argparse.ArgumentParser, path: str) -> str:
    """The flag behind a field path or run option (``federation.rounds`` -> ``--rounds``)."""
    for action in _actions(parser):
        if action.option_strings and action.dest in (path, f"{path}_file"):
            return action.option_strings[0]
    return path


def _actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _actions(sub)


def given_fields(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The configuration fields the command line set, by path (``federation.rounds``): a flag
    not given is absent (its default is ``SUPPRESS``); a section's own switch is its name."""
    top = {f.name for f in dataclasses.fields(ExperimentConfig)}
    return {key: value for key, value in {**vars(args), **overrides}.items()
            if key.split(".", 1)[0] in SECTIONS or key in top}


def with_fields(base: dict, given: dict[str, Any]) -> ExperimentConfig:
    """``base`` (an :meth:`ExperimentConfig.to_dict`) with the ``given`` fields set; an
    optional section that is off is turned on by any of its fields or its switch."""
    d = copy.deepcopy(base)
    for path, value in given.items():
        name, _, field = path.partition(".")
        if name in SECTIONS and d.get(name) is None:
            d[name] = {}
        if field:
            d[name][field] = value
        elif name not in SECTIONS:
            d[name] = value
    return ExperimentConfig.from_dict(d)
