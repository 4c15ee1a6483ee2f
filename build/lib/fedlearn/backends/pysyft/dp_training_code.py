"""The DP-SGD variant of fedlearn's generated training function, for Datasites with a budget.

Why: the plain function returns an exact weight change, and whoever chooses the weights
can make that change spell out each training image ("trap weights": Fowl et al. 2022,
"Robbing the Fed"; Boenisch et al. 2023, "When the curious abandon honesty: federated
learning is not private"). This variant is the same function — the same inlined model,
declared normalisation and input checks (:func:`training_code.assemble`) — whose body trains as
:class:`fedlearn.workers.dp_sgd.DPSGDWorker` does (Abadi et al. 2016, "Deep Learning with
Differential Privacy", through Opacus): per-sample gradients clipped to ``MAX_GRAD_NORM``,
Gaussian noise of std ``NOISE_MULTIPLIER * MAX_GRAD_NORM`` added to their sum, batches
drawn by Poisson sampling at Opacus's rate ``1 / ceil(N / batch_size)``. Both constants
are written into the source, so the owner's review reads them and the Datasite's
accountant (:mod:`.owner_limits`) charges by them.

Where it differs from the plain function, each difference is for privacy:

- its randomness comes from a fresh secret seed, not the call's ``seed``: the scientist
  chooses ``seed``, and with it could replay Opacus's sampling and noise and subtract the
  noise (the attack test shows the images then come back exactly). Given the same seed it
  draws exactly what ``DPSGDWorker.fit`` draws (tested), so the two agree where they can;
- it returns no training loss (NaN): the loss is an exact statistic of the private data,
  outside DP-SGD's guarantee; and ``num_examples`` is ``epochs * N`` (public), not the
  Poisson count;
- ``mode="evaluate"`` is refused: a loss or accuracy on the private data carries no
  noise (see :func:`.owner_limits.call_refusal`);
- ``prox_mu`` must be 0: Opacus clips per-sample gradients of the loss alone.

torch's generator is not a cryptographic one (Opacus's ``secure_mode`` needs the
unmaintained ``torchcsprng``): the seed is secret, but floating-point attacks on the
noise (Jin et al. 2022, "Are we there yet? Timing and floating-point attacks on
differential privacy systems") are not closed here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fedlearn.backends.pysyft import training_code
from fedlearn.config.fields import number
from fedlearn.data.normalisation import MNIST_NORMALISATION, Normalisation

_DP_LINE = ("    NOISE_MULTIPLIER, MAX_GRAD_NORM = {noise!r}, {clip!r}  # DP-SGD: the owner's "
            "review reads these\n")
_DP_LINE_RE = re.compile(r"^    NOISE_MULTIPLIER, MAX_GRAD_NORM = (\S+), (\S+)  # ", re.MULTILINE)

_DP_DOC = '''    """fedlearn: one DP-SGD federated round on this Datasite's private shard.

    mode == "fit": load the global `weights` into a {model} and train it with
    DP-SGD (Abadi et al. 2016, Opacus) as `plan` says (epochs, batch_size, lr,
    momentum, weight_decay; prox_mu must be 0): every example's gradient is
    clipped to MAX_GRAD_NORM, Gaussian noise of std NOISE_MULTIPLIER *
    MAX_GRAD_NORM is added to each batch's sum, and batches are drawn by Poisson
    sampling, all from a fresh secret seed (`seed` is checked, not used: whoever
    knows the seed knows the noise). Return ONLY the weight change and epochs * N;
    no loss (an exact statistic of the data). mode == "evaluate" is refused: its
    loss and accuracy would carry no noise. Every input is checked first; no input
    and no image or label is ever returned. `proof`, a SHA-256 of the nonce, shows
    the data scientist the result is fresh.
    """'''

_DP_BODY = '''
    if mode == "evaluate":
        return {"refused": "this DP-SGD code does not evaluate: a loss or accuracy on the "
                           "private data would carry no noise"}
    if plan["prox_mu"] != 0:
        return {"refused": "prox_mu must be 0: DP-SGD clips per-example gradients of the "
                           "loss alone"}
    import secrets
    import warnings
    from opacus import PrivacyEngine

    try:
        x = normalise(images, *NORMALISATION)
    except ValueError as refusal:  # the declaration does not fit the data's channels
        return {"refused": str(refusal)}
    y = torch.as_tensor(labels).long()
    model.load_state_dict(weights)
    plan = TrainPlan(**plan)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=plan.batch_size)
    with warnings.catch_warnings():
        # the noise comes from torch's generator, seeded below from a secret
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        private, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
            module=model, optimizer=make_optimizer(model, plan), data_loader=loader,
            noise_multiplier=NOISE_MULTIPLIER, max_grad_norm=MAX_GRAD_NORM,
            poisson_sampling=True)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(secrets.randbits(63))  # Poisson sampling and the noise draw from it
        private.train()
        # Opacus's per-example hooks fire on the first layer, whose input needs no gradient
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(plan.epochs):
            for xb, yb in loader:
                if len(yb) == 0:  # Poisson sampling can draw an empty batch
                    continue
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(private(xb), yb).backward()
                optimizer.step()
    delta = {k: v.detach() - weights[k] for k, v in model.state_dict().items()}
    return {"proof": proof, "delta": delta, "num_examples": plan.epochs * len(y),
            "loss": float("nan")}
'''


@dataclass(frozen=True)
class DPCode:
    """What :func:`dp_variant_in` read from a source: the model and the DP-SGD constants."""

    model: str  # a ready-made name, or the class name of the scientist's own model
    ready_made: bool
    noise_multiplier: float
    max_grad_norm: float
    run: str
    model_source: str = ""  # the class's source, for the scientist's own model
    normalisation: Normalisation = MNIST_NORMALISATION  # what the source declares


def _checked(noise: float, clip: float) -> tuple[float, float]:
    number(noise, "noise_multiplier", 0)
    number(clip, "max_grad_norm", 0, low_open=True)
    return float(noise), float(clip)


def _once(source: str, anchor: str) -> int:
    return training_code.find_once(source, anchor, "dp_training_code")


def dp_assemble(model_source: str, model_name: str, run: str, noise: float, clip: float,
                normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The plain generated function (:func:`training_code.assemble`) with the DP-SGD body."""
    noise, clip = _checked(noise, clip)
    source = training_code.with_header(
        training_code.assemble(model_source, model_name, run, normalisation),
        _DP_DOC.format(model=model_name), _DP_LINE.format(noise=noise, clip=clip),
        "dp_training_code")
    body = _once(source, training_code.PROOF_LINE) + len(training_code.PROOF_LINE)
    return source[:body] + _DP_BODY


def dp_training_function_source(model, noise: float, clip: float,
                                 run: str = training_code.TUTORIAL_RUN,
                                 normalisation: Normalisation = MNIST_NORMALISATION) -> str:
    """The DP-SGD function's source for a ready-made name or your model class."""
    cls = training_code.model_class(model)
    return dp_assemble(training_code.check_self_contained(cls), cls.__name__, run, noise, clip,
                       normalisation)


def dp_variant_in(source: str) -> DPCode | None:
    """The model and constants if ``source`` is exactly this module's function; else None.

    The constants are read from their line and the whole source is generated again from
    them and compared, so nothing else in it can differ.
    """
    constants, run = _DP_LINE_RE.search(source), training_code.run_of(source)
    normalisation = training_code.normalisation_of(source)
    if constants is None or run is None or normalisation is None:
        return None
    try:
        noise, clip = _checked(float(constants[1]), float(constants[2]))
    except ValueError:
        return None
    found = training_code.model_of_generated(
        source, lambda model: dp_training_function_source(model, noise, clip, run, normalisation),
        lambda model_source, name: dp_assemble(model_source, name, run, noise, clip,
                                               normalisation))
    if found is None:
        return None
    model, ready_made, model_source = found
    return DPCode(model, ready_made, noise, clip, run, model_source, normalisation)


def load_dp_training_function(model, noise: float, clip: float,
                              run: str = training_code.TUTORIAL_RUN,
                              normalisation: Normalisation = MNIST_NORMALISATION):
    """Import the DP-SGD function from a real file (PySyft reads its source)."""
    return training_code.load_source(
        dp_training_function_source(model, noise, clip, run, normalisation), "fedlearn_round_dp")
