"""The model class a code request ships: which class, its source, and whether it runs alone.

PySyft runs a code request with a plain ``exec`` on the Datasite, so the class the data
scientist sends (a ready-made fedlearn model or their own) must use nothing but torch,
``torch.nn as nn``, ``torch.nn.functional as F`` and Python builtins, and must not take a
name the generated function already binds (:mod:`fedlearn.portable`'s functions and the
template's own names). :func:`check_self_contained` says so before anything is submitted,
and the owner's review says it again about the source it received.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import textwrap

import torch.nn as nn

from fedlearn import models, portable
from fedlearn.config import ModelSpec
from fedlearn.errors import FedlearnError

# what a model class may use besides its own names: exec on the Datasite provides these
_FORBIDDEN_BUILTINS = {"open", "exec", "eval", "compile", "__import__", "getattr", "setattr",
                       "delattr", "globals", "locals", "vars", "input", "breakpoint", "memoryview"}
_ALLOWED_NAMES = frozenset({"torch", "nn", "F"} | set(dir(builtins)) - _FORBIDDEN_BUILTINS)


def inlined_source(module) -> str:
    """What a code request inlines from a self-contained module: the file after its docstring
    (imports and functions), exactly as written."""
    text = inspect.getsource(module)
    first = ast.parse(text).body[1]  # body[0] is the module docstring
    return "\n".join(text.splitlines()[first.lineno - 1:]).rstrip("\n") + "\n"


def portable_source() -> str:
    """What every code request inlines from :mod:`fedlearn.portable`."""
    return inlined_source(portable)


def _portable_names() -> frozenset[str]:
    tree = ast.parse(portable_source())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).partition(".")[0] for a in node.names}
    return frozenset(names)


# names the template binds: a model class must not rebind them
_TEMPLATE_NAMES = _portable_names() | {"TrainPlan", "hashlib", "LIMITS", "RUN", "NORMALISATION",
                                       "images", "labels", "weights", "plan", "seed", "nonce",
                                       "mode"}


def model_class(model: ModelSpec) -> type:
    """The ``nn.Module`` class whose source is shipped: a ready-made name, or your own class."""
    if isinstance(model, str):
        return type(models.build_model(model))
    if isinstance(model, type) and issubclass(model, nn.Module):
        return model
    raise FedlearnError("the PySyft backend ships the model as the source of its class: pass "
                        f"the nn.Module class itself (got {model!r})")


def _bound_names(tree: ast.AST) -> set[str]:
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
    return bound


def self_contained_problem(source: str, name: str) -> str | None:
    """What in a model class's source could not run on the Datasite, or None.

    PySyft runs the code request with a plain ``exec``: a model that reaches for a
    module global, an import or another class of yours would fail there.
    """
    tree = ast.parse(source)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    loaded = {n.id for n in ast.walk(tree)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    uses = sorted(loaded - _bound_names(tree) - _ALLOWED_NAMES)
    uses += ["import statements"] if imports else []
    uses += [f"the reserved name {name}"] if name in _TEMPLATE_NAMES else []
    if not uses:
        return None
    return (f"model class {name} is not self-contained: it uses {', '.join(uses)}. The PySyft "
            "code request runs with a plain exec on the Datasite, so the class may use only "
            "torch, torch.nn as nn, torch.nn.functional as F and Python builtins")


def check_self_contained(cls: type) -> str:
    """The class's source, if it can run with only torch, nn, F and builtins; else a clear error."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError) as exc:
        raise FedlearnError(f"cannot read the source of model class {cls.__name__} ({exc}); "
                            "define it in a .py file or a notebook cell") from exc
    problem = self_contained_problem(source, cls.__name__)
    if problem is not None:
        raise FedlearnError(problem)
    return source
