"""The training code a data scientist submits to a Datasite, built from fedlearn's own source.

PySyft ships a code request as the source of one function and runs it with a
plain ``exec`` inside the data owner's server: no closures, no module globals.
So the function is generated: :mod:`fedlearn.portable` (normalisation, training,
evaluation: plain torch, self-contained) and the model class are inlined into its
body, after a header that declares the run, the bounds and the scientist's
:class:`~fedlearn.data.Normalisation` (written as a literal the owner reads and the
review parses back). The owner reviews exactly the code that runs, and it is the
same code the in-process workers import, which is why the backends give the same
weights. Nothing else of fedlearn's is copied in: an edit anywhere but in
``portable.py``, the model class or this template leaves the request unchanged.

The function distrusts its caller: every input is checked against stated
bounds (:data:`LIMITS`) before any private data is touched (a refusal comes
back as ``{"refused": reason}``, naming the bound, never the data), and it returns
only the weight change, the example count and the loss (or loss and accuracy) —
never one of its inputs. Freshness is proven by a digest of the call's nonce
(:func:`nonce_proof`), not by echoing it.

The generated file is written to a cache directory and imported, so that
``inspect.getsource`` (which PySyft uses) finds real source.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
import textwrap
from pathlib import Path
from typing import Any

from fedlearn.backends.pysyft.model_source import (  # noqa: F401 (re-exported)
    check_self_contained,
    model_class,
    portable_source,
    self_contained_problem,
)
from fedlearn.config import MODELS
from fedlearn.data import cache_dir
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation, check_normalisation
from fedlearn.errors import FedlearnError
from fedlearn.files import atomic_write

FUNCTION_NAME = "fedlearn_round"
DATASET = "mnist"  # the dataset an owner uploads; its assets are the function's first inputs
INPUTS = ("images", "labels", "weights", "plan", "seed", "nonce", "mode")
ASSET_INPUTS = ("images", "labels")  # bound to the owner's private assets
# what the data scientist supplies, and the plain type each must have
USER_INPUTS = {"weights": dict, "plan": dict, "seed": int, "nonce": str, "mode": str}
# bounds the code enforces on the Datasite: generous for real training, small enough
# that an approved request cannot be turned into a resource sink
LIMITS: dict[str, Any] = {"epochs": (1, 50), "batch_size": (1, 8192), "lr": (0.0, 10.0),
          "momentum": (0.0, 1.0), "weight_decay": (0.0, 1.0), "prox_mu": (0.0, 100.0),
          "clip_norm": (0.0, 1e6), "seed": (0, 2**63 - 1), "nonce_length": 32,
          "quantize_bits": (1, 8), "wire_seed": (0, 2**63 - 1)}
TUTORIAL_RUN = "0" * 32  # the run id of code requests made by hand (the tutorial's)
_RUN_LINE = re.compile(r"^    RUN = '([0-9a-f]{32})'", re.MULTILINE)
_NORMALISATION_LINE = re.compile(r"^    NORMALISATION = (\(.*\))  # ", re.MULTILINE)

_HEADER = '''def {name}(images, labels, weights, plan, seed, nonce, mode):
    """fedlearn: one federated round on this Datasite's private shard.

    mode == "fit": load the global `weights` into a {model} and train it with SGD
    as `plan` says (epochs, batch_size, lr, momentum, weight_decay, prox_mu),
    shuffling with `seed`; return ONLY the weight change (clipped here to L2 norm
    plan["clip_norm"] when the plan has one above 0: DP-FedAvg; quantized to
    plan["quantize_bits"] bits a value, rounded at random from plan["wire_seed"], when the
    plan says so), the number of examples used and the mean training loss.
    mode == "evaluate": return only the loss and accuracy of `weights` on the local data.
    The data is first normalised as NORMALISATION (divide_by, mean, std) declares:
    (x / divide_by - mean) / std per channel. Every input is checked first (bounds
    below); no input and no image or label is ever returned. `proof`, a SHA-256 of the
    32-hex-digit `nonce`, shows the data scientist the result is fresh (PySyft issue
    #9391) without echoing anything they sent.
    """
    import hashlib
    from types import SimpleNamespace as TrainPlan

    NORMALISATION = {normalisation!r}  # (divide_by, mean, std): the scientist's declaration
    LIMITS = {limits!r}
    RUN = {run!r}  # one code request per fedlearn run: a new run needs a new approval
'''

_CHECKS = '''
    def _bounded(name, value, kind):
        low, high = LIMITS[name]
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise ValueError(f"{{name}} must be {{kind.__name__}}, got {{type(value).__name__}}")
        if not low <= value <= high:
            raise ValueError(f"{{name}} must be in [{{low}}, {{high}}], got {{value!r}}")

    def _checked_model():
        if type(mode) is not str or mode not in ("fit", "evaluate"):
            raise ValueError("mode must be 'fit' or 'evaluate'")
        if (type(nonce) is not str or len(nonce) != LIMITS["nonce_length"]
                or any(c not in "0123456789abcdef" for c in nonce)):
            raise ValueError("nonce must be {{}} lowercase hex digits".format(
                LIMITS["nonce_length"]))
        _bounded("seed", seed, int)
        if type(plan) is not dict:
            raise ValueError("plan must be a dict")
        plan_keys = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "prox_mu",
                     "precision", "channels_last")
        if mode == "evaluate":
            plan_keys = ()
        optional = {{"clip_norm", "quantize_bits", "wire_seed"}}
        if sorted(set(plan) - optional) != sorted(plan_keys) or (
                mode == "evaluate" and plan):
            raise ValueError(f"plan must have exactly the keys {{sorted(plan_keys)}} "
                             "(and clip_norm, quantize_bits with wire_seed, optionally, to "
                             "train)")
        if ("quantize_bits" in plan) != ("wire_seed" in plan):
            raise ValueError("plan's quantize_bits and wire_seed come together")
        if plan and (plan["precision"] != "fp32" or plan["channels_last"] is not False):
            raise ValueError("this code trains in fp32 with the default memory format")
        for key in ("epochs", "batch_size", "quantize_bits", "wire_seed"):
            if key in plan:
                _bounded(key, plan[key], int)
        for key in ("lr", "momentum", "weight_decay", "prox_mu", "clip_norm"):
            if key in plan:
                _bounded(key, plan[key], float)
        model = {model}()
        expected = model.state_dict()
        if type(weights) is not dict or sorted(weights) != sorted(expected):
            raise ValueError("weights must have exactly the model's keys")
        for key, value in expected.items():
            given = weights[key]
            if (not isinstance(given, torch.Tensor) or given.shape != value.shape
                    or given.dtype != value.dtype or given.requires_grad):
                raise ValueError(f"weights[{{key!r}}] must be a {{value.dtype}} tensor of shape "
                                 f"{{tuple(value.shape)}}")
        return model

    try:
        model = _checked_model()
    except ValueError as refusal:  # told to the caller (syft hides raised errors from them)
        return {{"refused": str(refusal)}}
    proof = hashlib.sha256(("fedlearn-round:" + nonce).encode()).hexdigest()
'''

_BODY = '''
    try:
        x = normalise(images, *NORMALISATION)
    except ValueError as refusal:  # the declaration does not fit the data's channels
        return {{"refused": str(refusal)}}
    y = torch.as_tensor(labels).long()
    model.load_state_dict(weights)
    if mode == "evaluate":
        metrics = evaluate(model, x, y)
        return {{"proof": proof, "loss": float(metrics["loss"]),
                "accuracy": float(metrics["accuracy"]), "num_examples": int(metrics["examples"])}}
    plan = TrainPlan(**plan)
    metrics = train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=seed)
    delta = {{k: v.detach() - weights[k] for k, v in model.state_dict().items()}}
    if getattr(plan, "clip_norm", 0) > 0:  # the owner's update leaves already clipped
        delta = clip_change(delta, plan.clip_norm)
    if hasattr(plan, "quantize_bits"):  # only the codes leave: quantize_bits a value
        return {{"proof": proof, "quantized": quantize_change(
                    delta, plan.quantize_bits, torch.Generator().manual_seed(plan.wire_seed)),
                "num_examples": int(metrics["examples"]), "loss": float(metrics["loss"])}}
    return {{"proof": proof, "delta": delta, "num_examples": int(metrics["examples"]),
            "loss": float(metrics["loss"])}}
'''


def check_plan(plan) -> None:
    """Refuse, before anyone is asked to approve, a plan the approved code would refuse."""
    from fedlearn.config import ConfigError

    for name in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "prox_mu"):
        low, high = LIMITS[name]
        value = getattr(plan, name)
        if not low <= value <= high:
            raise ConfigError(f"plan.{name}", "the PySyft backend's approved code accepts "
                              f"{low} to {high} (got {value})")


def nonce_proof(nonce: str) -> str:
    """What the generated function returns for ``nonce``: proof the result is fresh."""
    return hashlib.sha256(("fedlearn-round:" + nonce).encode()).hexdigest()


def run_of(source: str) -> str | None:
    """The run id written into a generated function's source, or None."""
    match = _RUN_LINE.search(source)
    return match.group(1) if match else None


def check_run(run: str) -> str:
    if not isinstance(run, str) or not re.fullmatch(r"[0-9a-f]{32}", run):
        raise FedlearnError(f"a run id is 32 lowercase hex digits (got {run!r})")
    return run


def normalisation_of(source: str) -> Normalisation | None:
    """The :class:`Normalisation` declared in a generated function's source, or None (no
    such line, or one that is not a valid declaration)."""
    match = _NORMALISATION_LINE.search(source)
    if match is None:
        return None
    try:
        divide_by, mean, std = ast.literal_eval(match.group(1))
        return Normalisation(divide_by, mean, std)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def custom_model_in(source: str) -> tuple[str, str] | None:
    """(class name, class source) if ``source`` is fedlearn's generated function around a
    model class that is not a ready-made one; None otherwise."""
    run, normalisation = run_of(source), normalisation_of(source)
    if run is None or normalisation is None:
        return None
    node = _the_class(source)
    segment = None if node is None else ast.get_source_segment(source, node, padded=True)
    if node is None or segment is None:
        return None
    model_source = textwrap.dedent(segment) + "\n"
    if assemble(model_source, node.name, run, normalisation).strip() != source.strip():
        return None
    return node.name, model_source


def _the_class(source: str) -> ast.ClassDef | None:
    """The one class defined in the body of the one function ``source`` starts with."""
    try:
        function = ast.parse(source).body[0]
    except (SyntaxError, IndexError):
        return None
    classes = [n for n in getattr(function, "body", []) if isinstance(n, ast.ClassDef)]
    return classes[0] if len(classes) == 1 else None


# where the variants (DP-SGD, top-k) edit the plain function: after the freshness proof
PROOF_LINE = '    proof = hashlib.sha256(("fedlearn-round:" + nonce).encode()).hexdigest()\n'


def with_header(source: str, doc: str, constant_line: str, module: str) -> str:
    """The plain generated ``source`` with its docstring replaced by ``doc`` and
    ``constant_line`` (a variant's constants, which the review reads back) after LIMITS."""
    start = find_once(source, '    """fedlearn: one federated round', module)
    end = source.index('\n    """\n', start) + len('\n    """')
    source = source[:start] + doc + source[end:]
    line_end = source.index("\n", find_once(source, "\n    LIMITS = ", module) + 1) + 1
    return source[:line_end] + constant_line + source[line_end:]


def find_once(source: str, anchor: str, module: str) -> int:
    """Where ``anchor`` is in ``source``, which must hold it exactly once (a variant module
    editing the generated function says that it must be updated)."""
    at = source.find(anchor)
    if at < 0 or source.find(anchor, at + 1) >= 0:
        raise AssertionError(f"fedlearn's generated function changed: {anchor.strip()!r} "
                             f"must occur exactly once (update {module})")
    return at


def model_of_generated(source: str, ready_made, around) -> tuple[str, bool, str] | None:
    """(model, ready-made?, the class's source) if ``source`` is exactly what fedlearn generates
    around its one model class: ``ready_made(name)`` for a ready-made model, or
    ``around(class source, class name)`` for the data scientist's own; else None. The whole
    source is generated again and compared, so nothing else in it can differ."""
    node = _the_class(source)
    if node is None:
        return None
    name = node.name
    for model in MODELS:
        if model_class(model).__name__ == name and ready_made(model).strip() == source.strip():
            return model, True, ""
    # whole lines: a class's last line may end in a comment, which its AST node leaves out
    lines = source.splitlines()[node.lineno - 1:node.end_lineno]
    model_source = textwrap.dedent("\n".join(lines)) + "\n"
    if around(model_source, name).strip() != source.strip():
        return None
    return name, False, model_source


def assemble(model_source: str, model_name: str, run: str = TUTORIAL_RUN,
             normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """fedlearn's generated function around the source of one model class, for one run and
    one declared normalisation: the header, :mod:`fedlearn.portable`, the class, the checks
    and the body."""
    inlined = "\n".join(textwrap.indent(p, "    ") for p in (portable_source(), model_source))
    header = _HEADER.format(name=FUNCTION_NAME, model=model_name,
                            normalisation=check_normalisation(normalisation).as_literal(),
                            limits=LIMITS, run=check_run(run))
    return header + "\n" + inlined + _CHECKS.format(model=model_name) + _BODY.format()


def training_function_source(model, run: str = TUTORIAL_RUN,
                             normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The full source of the submitted function for a ready-made name or your model class."""
    cls = model_class(model)
    return assemble(check_self_contained(cls), cls.__name__, run, normalisation)


def source_digest(source: str) -> str:
    """SHA-256 of a function's source, as the owner sees it (surrounding blank space ignored)."""
    return hashlib.sha256(source.strip().encode()).hexdigest()


def known_digests(run: str = TUTORIAL_RUN,
                  normalisation: Normalisation = MNIST_NORMALISATION) -> dict[str, str]:
    """SHA-256 of fedlearn's generated function for each ready-made model -> the model name."""
    return {source_digest(training_function_source(name, run, normalisation)): name
            for name in MODELS}


def ready_made_in(source: str) -> str | None:
    """The ready-made model whose generated function (for the run and the normalisation it
    names) ``source`` is."""
    run, normalisation = run_of(source), normalisation_of(source)
    if run is None or normalisation is None:
        return None
    return known_digests(run, normalisation).get(source_digest(source))


def load_training_function(model, run: str = TUTORIAL_RUN,
                           normalisation: Normalisation = MNIST_NORMALISATION):
    """Import the generated function from a real file (PySyft reads its source)."""
    return load_source(training_function_source(model, run, normalisation), "fedlearn_round")


def load_source(source: str, prefix: str, function: str = FUNCTION_NAME):
    """The function in ``source``, imported from a file named by its digest (syft reads it)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    path = Path(cache_dir()) / "syft_code" / f"{prefix}_{digest}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != source:  # two processes may write it at once
        atomic_write(path, lambda f: f.write(source.encode()))
    spec = importlib.util.spec_from_file_location(f"{prefix}_{digest}", path)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)
