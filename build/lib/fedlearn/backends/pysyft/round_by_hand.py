"""One round with a Datasite done by hand, as the tutorial does it: what to read, what to send.

A generated training function is some 280 lines (:mod:`.training_code`): input checks,
normalisation, the model class, clipping and quantization. :func:`core_lines` cuts out the
lines that train and compute the change, verbatim, from the very source string the code
request carries and the owner's review hashes (:func:`.training_code.source_digest`), so what
a reader is shown is provably part of what the owners approve.

:func:`fit_inputs` and :func:`is_fresh` are the plumbing of one call of the approved function
(the inputs the data scientist supplies, and PySyft issue #9391's freshness check), so that a
round done by hand reads as the five steps: model out, train at the data, change back, average.
"""
from __future__ import annotations

import ast
import dataclasses
import uuid
from dataclasses import dataclass
from typing import TypeGuard

from fedlearn.backends.pysyft.training_code import nonce_proof
from fedlearn.config import TrainPlan


@dataclass(frozen=True)
class Excerpt:
    """Lines ``first``..``last`` (1-based, inclusive) of a source, exactly as written there."""

    first: int
    last: int
    what: str  # what these lines do, for the reader
    text: str


def _lines(source: str, first: int, last: int, what: str) -> Excerpt:
    return Excerpt(first, last, what, "\n".join(source.splitlines()[first - 1:last]))


def _calls(node: ast.AST, method: str) -> TypeGuard[ast.Expr]:
    """Whether ``node`` is a statement ``something.method(...)``."""
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == method)


def core_excerpts(source: str) -> list[Excerpt]:
    """The lines of fedlearn's generated training function that train and compute the change,
    in reading order: the function's own lines from loading the global weights to computing the
    change; the training loop they run (``_train``'s, inlined from :mod:`fedlearn.portable`) up
    to ``optimizer.step()``; and its last line, what it returns. Raises ValueError for a source
    that is not such a function."""
    try:
        function = ast.parse(source).body[0]
    except (SyntaxError, IndexError) as exc:
        raise ValueError("not fedlearn's generated training function: no function") from exc
    body = getattr(function, "body", [])
    train = next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == "_train"), None)
    loop = next((n for n in getattr(train, "body", []) if isinstance(n, ast.For)), None)
    step = next((n for n in ast.walk(loop) if _calls(n, "step")), None) if loop else None
    load = next((n for n in body if _calls(n, "load_state_dict")), None)
    delta = next((n for n in body if isinstance(n, ast.Assign)
                  and [getattr(t, "id", None) for t in n.targets] == ["delta"]), None)
    if loop is None or step is None or load is None or delta is None \
            or not isinstance(body[-1], ast.Return):
        raise ValueError("not fedlearn's generated training function: no training loop, "
                         "weights loaded, change computed or final return")
    assert step.end_lineno and delta.end_lineno and body[-1].end_lineno  # parsed from text
    return [_lines(source, load.lineno, delta.end_lineno,
                   "load the global weights, train, compute the change"),
            _lines(source, loop.lineno, step.end_lineno,
                   "inside train_epochs (fedlearn/portable.py): the training loop"),
            _lines(source, body[-1].lineno, body[-1].end_lineno, "what comes back")]


def core_lines(source: str) -> str:
    """:func:`core_excerpts` for people: each excerpt after a comment line naming its lines."""
    total = len(source.splitlines())
    return "\n".join(f"# lines {e.first}-{e.last} of {total}: {e.what}\n{e.text}"
                     for e in core_excerpts(source))


def fit_inputs(plan: TrainPlan, *, seed: int) -> dict:
    """What the data scientist passes to the approved function to train, besides the global
    weights and the owner's assets: the plan as a plain dict, the seed of the shuffling, a fresh
    32-hex-digit nonce, and ``mode="fit"``."""
    return {"plan": dataclasses.asdict(plan), "seed": int(seed), "nonce": uuid.uuid4().hex,
            "mode": "fit"}


def is_fresh(result: dict, inputs: dict) -> bool:
    """Whether ``result`` was computed for the call made with ``inputs``: it carries the digest
    of their nonce. PySyft 0.9.5 can hand back an old stored output instead (issue #9391)."""
    return isinstance(result, dict) and result.get("proof") == nonce_proof(inputs["nonce"])
