"""The secure-aggregation variant of fedlearn's generated function: the owner's side of SecAgg.

Why: with the plain function the data scientist receives each owner's exact weight change.
Under secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for
Privacy-Preserving Machine Learning") they receive only masked vectors whose masks cancel in
the sum of the owners. An owner can trust only what runs on their own Datasite, so the whole
owner's side runs in this approved function: :mod:`fedlearn.secagg_portable` is inlined into
it beside :mod:`fedlearn.portable` and the model class, and its long-term secret is a private
asset of the Datasite (``secagg_key``, made there: :meth:`.owner.Datasite.upload`), bound to
the input ``secagg_key``, never returned. One function answers every stage (``mode``):

- ``"keys"``: the round's two public keys (AdvertiseKeys);
- ``"share"``: Shamir shares of the round's secrets, encrypted to each owner (ShareKeys);
- ``"fit"``: train as the plain function does, then return ``[w·Δ, w]`` quantized into the
  ring and masked — never the change itself (MaskedInputCollection);
- ``"unmask"``: one kind of share per peer (Unmasking);
- ``"evaluate"``: loss and accuracy, as the plain function.

Each round's secrets are derived from the asset and the round's context ``RUN|round id``,
so the function keeps nothing between calls; what must be remembered — one masked input per
round id, one kind of share per peer, the same weights never masked with another set of
owners — the Datasite's server records durably before the call runs
(:mod:`.call_guard`, :class:`fedlearn.updates.secagg.SecAggLedger`).

Semi-honest security (Bonawitz et al.'s Fig. 4, without the signatures of their active
variant): a scientist who sends different owners different rosters is not detected.
"""
from __future__ import annotations

import textwrap
from dataclasses import dataclass

from fedlearn import secagg_portable
from fedlearn.backends.pysyft import training_code
from fedlearn.backends.pysyft.model_source import inlined_source
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation, check_normalisation

FUNCTION_NAME = "fedlearn_secure_round"
ASSET_INPUTS = ("images", "labels", "secagg_key")
INPUTS = ("images", "labels", "secagg_key", "weights", "plan", "seed", "nonce", "mode",
          "message")
USER_INPUTS = {**training_code.USER_INPUTS, "message": dict}
MODES = ("keys", "share", "fit", "unmask", "evaluate")
SECRET_ASSET = "secagg_key"
MAX_OWNERS = 1000

_HEADER = '''def {name}(images, labels, secagg_key, weights, plan, seed, nonce, mode, message):
    """fedlearn: one stage of a securely aggregated round on this Datasite's private shard.

    Secure aggregation (Bonawitz et al. 2017): the data scientist learns only the sum of
    the owners' updates. `secagg_key` is this Datasite's private secret; every key, seed
    and share of a round is derived from it and the round's context RUN|message["round"].
    mode == "keys": the round's public keys. mode == "share": Shamir shares of the round's
    secrets, each encrypted to one owner of message["roster"]. mode == "fit": load the
    global `weights` into a {model}, train as `plan` says (SGD, shuffled with `seed`;
    clipped to plan["clip_norm"] if above 0), and return ONLY [w*change, w] (w: the example
    count, or 1 if not message["weighted"]) quantized at message["scale"] into
    message["ring_bits"]-bit integers, refused if a value exceeds message["value_range"],
    plus this owner's masks: a vector that looks uniformly random. mode == "unmask": for
    each owner of the round, one share only: of its mask seed if it is among
    message["survivors"], of its key if among message["dropped"]. mode == "evaluate": only
    the loss and accuracy of `weights` on the local data. The data is first normalised as
    NORMALISATION (divide_by, mean, std) declares. Every input is checked first; no input,
    no secret and no image or label is ever returned. `proof`, a SHA-256 of `nonce`, shows
    the result is fresh.
    """
    import hashlib
    import re
    from types import SimpleNamespace as TrainPlan

    NORMALISATION = {normalisation!r}  # (divide_by, mean, std): the scientist's declaration
    LIMITS = {limits!r}
    RUN = {run!r}  # one code request per fedlearn run: a new run needs a new approval
    MAX_OWNERS = {max_owners!r}
'''

_CHECKS = '''
    def _bounded(name, value, kind):
        low, high = LIMITS[name]
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise ValueError(f"{{name}} must be {{kind.__name__}}, got {{type(value).__name__}}")
        if not low <= value <= high:
            raise ValueError(f"{{name}} must be in [{{low}}, {{high}}], got {{value!r}}")

    def _names(value, what):
        if type(value) is not list or len(value) > MAX_OWNERS or any(
                type(n) is not str or not 0 < len(n) <= 64 for n in value):
            raise ValueError(f"message[{{what!r}}] must be a list of owner names")
        return value

    def _checked_message():
        if type(message) is not dict or any(type(k) is not str for k in message):
            raise ValueError("message must be a dict with str keys")
        wanted = {{"keys": ("round",), "share": ("round", "me", "roster", "threshold"),
                  "fit": ("round", "me", "roster", "scale", "ring_bits", "value_range",
                          "weighted"),
                  "unmask": ("round", "me", "roster", "ciphertexts", "survivors", "dropped",
                             "threshold"), "evaluate": ()}}[mode]
        if sorted(message) != sorted(wanted):
            raise ValueError(f"message must have exactly the keys {{sorted(wanted)}}")
        if mode == "evaluate":
            return
        if type(message["round"]) is not str or not re.fullmatch(r"[0-9]{{1,9}}[|][0-9a-f]{{16}}",
                                                                  message["round"]):
            raise ValueError("message['round'] must be 'ROUND|16 hex digits'")
        if mode == "keys":
            return
        roster = message["roster"]
        if type(roster) is not dict or not 2 <= len(roster) <= MAX_OWNERS or any(
                type(k) is not str or type(v) is not dict or sorted(v) != ["c_pk", "s_pk"]
                or any(type(h) is not str or len(h) != 64 for h in v.values())
                for k, v in roster.items()):
            raise ValueError("message['roster'] must map 2..MAX_OWNERS owner names to their "
                             "public keys {{'c_pk': 64 hex digits, 's_pk': 64 hex digits}}")
        if type(message["me"]) is not str or message["me"] not in roster:
            raise ValueError("message['me'] must name this owner in the roster")
        if mode == "fit":
            if type(message["ring_bits"]) is not int or message["ring_bits"] not in (16, 32, 64):
                raise ValueError("message['ring_bits'] must be 16, 32 or 64")
            for key in ("scale", "value_range"):
                if type(message[key]) is not float or not 0 < message[key] < 2.0 ** 64:
                    raise ValueError(f"message[{{key!r}}] must be a positive float")
            if type(message["weighted"]) is not bool:
                raise ValueError("message['weighted'] must be True or False")
        if mode in ("share", "unmask") and type(message["threshold"]) is not int:
            raise ValueError("message['threshold'] must be an int")
        if mode == "unmask":
            _names(message["survivors"], "survivors")
            _names(message["dropped"], "dropped")
            texts = message["ciphertexts"]
            if type(texts) is not dict or len(texts) > MAX_OWNERS or any(
                    type(k) is not str or type(v) is not str or len(v) > 20000
                    for k, v in texts.items()):
                raise ValueError("message['ciphertexts'] must map owner names to hex strings")

    def _checked_model():
        if type(mode) is not str or mode not in {modes!r}:
            raise ValueError("mode must be one of {modes!r}")
        if (type(nonce) is not str or len(nonce) != LIMITS["nonce_length"]
                or any(c not in "0123456789abcdef" for c in nonce)):
            raise ValueError("nonce must be {{}} lowercase hex digits".format(
                LIMITS["nonce_length"]))
        _bounded("seed", seed, int)
        _checked_message()
        if type(plan) is not dict:
            raise ValueError("plan must be a dict")
        plan_keys = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "prox_mu",
                     "precision", "channels_last") if mode == "fit" else ()
        if sorted(set(plan) - {{"clip_norm"}}) != sorted(plan_keys) or (mode != "fit" and plan):
            raise ValueError(f"plan must have exactly the keys {{sorted(plan_keys)}} "
                             "(and clip_norm, optionally, to train)")
        if plan and (plan["precision"] != "fp32" or plan["channels_last"] is not False):
            raise ValueError("this code trains in fp32 with the default memory format")
        for key in ("epochs", "batch_size"):
            if key in plan:
                _bounded(key, plan[key], int)
        for key in ("lr", "momentum", "weight_decay", "prox_mu", "clip_norm"):
            if key in plan:
                _bounded(key, plan[key], float)
        if mode not in ("fit", "evaluate"):
            if weights != {{}}:
                raise ValueError("weights must be {{}} outside fit and evaluate")
            return None
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
        secret = bytes(np.asarray(secagg_key, dtype=np.uint8).ravel().tolist())
        if len(secret) != 32:
            raise ValueError("this Datasite's secagg_key asset is not 32 bytes")
    except ValueError as refusal:  # told to the caller (syft hides raised errors from them)
        return {{"refused": str(refusal)}}
    proof = hashlib.sha256(("fedlearn-round:" + nonce).encode()).hexdigest()
'''

_BODY = '''
    context = RUN + "|" + message.get("round", "")
    try:
        if mode == "keys":
            return {"proof": proof, "keys": secagg_public_keys(secret, context)}
        if mode == "share":
            return {"proof": proof, "ciphertexts": secagg_share_keys(
                secret, context, message["me"], message["roster"], message["threshold"])}
        if mode == "unmask":
            return {"proof": proof, "shares": secagg_unmask_shares(
                secret, context, message["me"], message["roster"], message["ciphertexts"],
                message["survivors"], message["dropped"], message["threshold"])}
        x = normalise(images, *NORMALISATION)
    except ValueError as refusal:  # a roster, share or declaration that does not fit
        return {"refused": str(refusal)}
    y = torch.as_tensor(labels).long()
    model.load_state_dict(weights)
    if mode == "evaluate":
        metrics = evaluate(model, x, y)
        return {"proof": proof, "loss": float(metrics["loss"]),
                "accuracy": float(metrics["accuracy"]), "num_examples": int(metrics["examples"])}
    plan = TrainPlan(**plan)
    metrics = train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=seed)
    delta = {k: v.detach() - weights[k] for k, v in model.state_dict().items()}
    if getattr(plan, "clip_norm", 0) > 0:  # the owner's update is clipped before masking
        delta = clip_change(delta, plan.clip_norm)
    weight = float(metrics["examples"]) if message["weighted"] else 1.0
    vector = np.append(np.concatenate([v.double().cpu().numpy().ravel() for v in delta.values()])
                       * weight, weight)  # the last slot carries the weight
    try:
        masked = secagg_mask(secret, context, message["me"], message["roster"], vector,
                             value_range=message["value_range"], scale=message["scale"],
                             ring_bits=message["ring_bits"])
    except ValueError as refusal:  # out of range: refused, never clipped
        return {"refused": str(refusal)}
    return {"proof": proof, "masked": masked, "num_examples": int(metrics["examples"]),
            "loss": float(metrics["loss"])}
'''


@dataclass(frozen=True)
class SecureCode:
    """What a secure-aggregation request's source is: its model, and whether it is ready-made."""

    model: str
    ready_made: bool
    model_source: str


def secagg_source() -> str:
    """What the request inlines from :mod:`fedlearn.secagg_portable`."""
    return inlined_source(secagg_portable)


def secure_assemble(model_source: str, model_name: str, run: str = training_code.TUTORIAL_RUN,
                    normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The secure function around one model class: header, portable.py, secagg_portable.py,
    the class, the checks and the body."""
    parts = (training_code.portable_source(), secagg_source(), model_source)
    inlined = "\n".join(textwrap.indent(p, "    ") for p in parts)
    header = _HEADER.format(name=FUNCTION_NAME, model=model_name,
                            normalisation=check_normalisation(normalisation).as_literal(),
                            limits=training_code.LIMITS, run=training_code.check_run(run),
                            max_owners=MAX_OWNERS)
    return (header + "\n" + inlined + _CHECKS.format(model=model_name, modes=MODES)
            + _BODY)


def secure_training_function_source(model, run: str = training_code.TUTORIAL_RUN,
                                    normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    cls = training_code.model_class(model)
    return secure_assemble(training_code.check_self_contained(cls), cls.__name__, run,
                           normalisation)


def secure_variant_in(source: str) -> SecureCode | None:
    """The model if ``source`` is exactly this module's function (generated again and
    compared, for the run and normalisation it names); else None."""
    run, normalisation = training_code.run_of(source), training_code.normalisation_of(source)
    if run is None or normalisation is None or f"def {FUNCTION_NAME}(" not in source:
        return None
    found = training_code.model_of_generated(
        source, lambda model: secure_training_function_source(model, run, normalisation),
        lambda model_source, name: secure_assemble(model_source, name, run, normalisation))
    return None if found is None else SecureCode(*found)


def load_secure_training_function(model, run: str = training_code.TUTORIAL_RUN,
                                  normalisation: Normalisation = MNIST_NORMALISATION):
    """Import the secure function from a real file (PySyft reads its source)."""
    source = secure_training_function_source(model, run, normalisation)
    return training_code.load_source(source, FUNCTION_NAME, FUNCTION_NAME)
