"""The top-k variant of fedlearn's generated training function: compressed updates whose
residual stays with the owner.

Why: top-k sparsification sends a hundredth of the update, and error feedback (Stich,
Cordonnier & Jaggi 2018, "Sparsified SGD with Memory") keeps what was not sent and adds it to
the next round's change, so nothing is lost, only delayed. That residual is as private as the
change itself, so it must stay on the Datasite — but PySyft 0.9.5 runs approved code with a
plain ``exec`` and keeps nothing between calls. So the residual is the Datasite's: the function
takes one more input, ``residual``, bound to the owner's private asset of that name, and the
Datasite's server (:mod:`.residual_keeper`) hands the function this approval's residual in its
place, durably stored in the owner's state, and stores what the function leaves in it. The
function returns only the sparse payload (indices and values per tensor, counters exactly),
never the residual.

It is the plain function (:func:`training_code.assemble`: the same inlined model, declared
normalisation and input checks) with :mod:`fedlearn.topk_portable` inlined, the fraction sent
written into the source as ``TOPK_FRACTION`` (the owner reads it at review), and a body that
ends in :func:`~fedlearn.topk_portable.topk_with_feedback` instead of returning the change.
Top-k does not combine with secure aggregation (each owner sends other coordinates, which masks
cannot sum) nor with the plan's quantization (one compression at a time): both are refused.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from fedlearn import topk_portable
from fedlearn.backends.pysyft import training_code
from fedlearn.backends.pysyft.model_source import inlined_source
from fedlearn.config.fields import number
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation

FUNCTION_NAME = "fedlearn_sparse_round"
RESIDUAL_ASSET = "residual"
# the asset's values, placeholders that tell the server which run is which: syft runs approved
# code on the private assets and again on their mocks, and only the private run's residual is kept
PRIVATE_SLOT, MOCK_SLOT = 1, 0
INPUTS = ("images", "labels", RESIDUAL_ASSET, "weights", "plan", "seed", "nonce", "mode")
ASSET_INPUTS = ("images", "labels", RESIDUAL_ASSET)
USER_INPUTS = training_code.USER_INPUTS

_SIGNATURE = f"def {training_code.FUNCTION_NAME}(images, labels, weights,"
_SPARSE_DOC = '''    """fedlearn: one federated round on this Datasite's private shard, as top-k.

    mode == "fit": load the global `weights` into a {model} and train it with SGD
    as `plan` says (epochs, batch_size, lr, momentum, weight_decay, prox_mu),
    shuffling with `seed`; clip the weight change to L2 norm plan["clip_norm"] when the
    plan has one above 0 (DP-FedAvg). Top-k with error feedback (Stich et al. 2018): of
    the change plus `residual` (what this owner did not send in earlier rounds, which this
    Datasite's server keeps and hands in; it is never returned), return ONLY the
    TOPK_FRACTION largest-magnitude entries of each tensor, as indices and values (integer
    buffers exactly), the number of examples used and the mean training loss; the rest
    becomes the new residual. mode == "evaluate": return only the loss and accuracy of
    `weights` on the local data. The data is first normalised as NORMALISATION (divide_by,
    mean, std) declares: (x / divide_by - mean) / std per channel. Every input is checked
    first (bounds below); no input, no residual and no image or label is ever returned.
    `proof`, a SHA-256 of the 32-hex-digit `nonce`, shows the data scientist the result is
    fresh (PySyft issue #9391) without echoing anything they sent.
    """'''
_TOPK_LINE = "    TOPK_FRACTION = {fraction!r}  # top-k: the share of each tensor's entries sent\n"
_TOPK_LINE_RE = re.compile(r"^    TOPK_FRACTION = (\S+)  # top-k: ", re.MULTILINE)
_CHECKS_START = "\n    def _bounded("
_RESIDUAL_CHECK = '''    if type(residual) is not dict or any(
            k not in weights or type(v) is not torch.Tensor or v.shape != weights[k].shape
            or v.dtype != weights[k].dtype for k, v in residual.items()):
        return {"refused": "this Datasite keeps no top-k residual for this code: serve it "
                           "with fedlearn (fedlearn datasite serve)"}
    if "quantize_bits" in plan:
        return {"refused": "this code sends top-k; it does not also quantize"}
'''
# the plain body's last two steps: quantizing (refused above) and returning the change
_PLAIN_TAIL = training_code._BODY.format()
_PLAIN_RETURN = _PLAIN_TAIL[_PLAIN_TAIL.index('    return {"proof": proof, "delta"'):]
_QUANTIZE = _PLAIN_TAIL[_PLAIN_TAIL.index('    if hasattr(plan, "quantize_bits")'):
                        _PLAIN_TAIL.index(_PLAIN_RETURN)]
_SPARSE_RETURN = '''    # only the largest entries leave; the rest stays here, in `residual`
    return {"proof": proof, "sparse": topk_with_feedback(delta, residual, TOPK_FRACTION),
            "num_examples": int(metrics["examples"]),
            "loss": float(metrics["loss"])}
'''


@dataclass(frozen=True)
class SparseCode:
    """What :func:`sparse_variant_in` read from a source: the model and the fraction sent."""

    model: str  # a ready-made name, or the class name of the scientist's own model
    ready_made: bool
    fraction: float
    model_source: str = ""  # the class's source, for the scientist's own model


def _checked(fraction: float) -> float:
    number(fraction, "topk_fraction", 0, 1, low_open=True)
    return float(fraction)


def _once(source: str, anchor: str) -> int:
    return training_code.find_once(source, anchor, "sparse_training_code")


def _replace_once(source: str, anchor: str, new: str) -> str:
    at = _once(source, anchor)
    return source[:at] + new + source[at + len(anchor):]


def sparse_assemble(model_source: str, model_name: str, run: str, fraction: float,
                    normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The plain generated function made to send top-k with the Datasite's residual."""
    fraction = _checked(fraction)
    source = training_code.assemble(model_source, model_name, run, normalisation)
    source = _replace_once(source, _SIGNATURE,
                           f"def {FUNCTION_NAME}(images, labels, {RESIDUAL_ASSET}, weights,")
    source = training_code.with_header(source, _SPARSE_DOC.format(model=model_name),
                                       _TOPK_LINE.format(fraction=fraction),
                                       "sparse_training_code")
    inlined = "\n" + textwrap.indent(inlined_source(topk_portable), "    ").rstrip("\n")
    source = _replace_once(source, _CHECKS_START, inlined + "\n" + _CHECKS_START)
    source = _replace_once(source, training_code.PROOF_LINE,
                           training_code.PROOF_LINE + _RESIDUAL_CHECK)
    source = _replace_once(source, _QUANTIZE, "")  # refused above: one compression at a time
    return _replace_once(source, _PLAIN_RETURN, _SPARSE_RETURN)


def sparse_training_function_source(model, fraction: float,
                                     run: str = training_code.TUTORIAL_RUN,
                                     normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The top-k function's source for a ready-made name or your model class."""
    cls = training_code.model_class(model)
    return sparse_assemble(training_code.check_self_contained(cls), cls.__name__, run,
                           fraction, normalisation)


def sparse_variant_in(source: str) -> SparseCode | None:
    """The model and fraction if ``source`` is exactly this module's function (generated again
    from what it declares and compared, so nothing else in it can differ); else None."""
    line, run = _TOPK_LINE_RE.search(source), training_code.run_of(source)
    normalisation = training_code.normalisation_of(source)
    if line is None or run is None or normalisation is None:
        return None
    try:
        fraction = _checked(float(line[1]))
    except ValueError:
        return None
    found = training_code.model_of_generated(
        source, lambda model: sparse_training_function_source(model, fraction, run, normalisation),
        lambda model_source, name: sparse_assemble(model_source, name, run, fraction,
                                                   normalisation))
    if found is None:
        return None
    model, ready_made, model_source = found
    return SparseCode(model, ready_made, fraction, model_source)


def load_sparse_training_function(model, fraction: float,
                                  run: str = training_code.TUTORIAL_RUN,
                                  normalisation: Normalisation = MNIST_NORMALISATION):
    """Import the top-k function from a real file (PySyft reads its source)."""
    source = sparse_training_function_source(model, fraction, run, normalisation)
    return training_code.load_source(source, FUNCTION_NAME, FUNCTION_NAME)
