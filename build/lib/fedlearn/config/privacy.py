"""What protects an update on its way: DP-FedAvg, DP-SGD, and compression for the upload."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from fedlearn.config.fields import Section, choice, number, option, positive_int, require

CompressionMethod = Literal["none", "quantize", "topk"]
COMPRESSIONS: tuple[str, ...] = get_args(CompressionMethod)
QUANTIZE_BITS = (1, 2, 4, 8)
SECAGG_RING_BITS = (16, 32, 64)


@dataclass(frozen=True, kw_only=True)
class DPConfig(Section):
    """DP-FedAvg (McMahan et al. 2018): every update clipped to ``clip_norm``, Gaussian noise
    added by the server. Give ``noise_multiplier`` (z), or ``target_epsilon`` to have z chosen
    so that the whole run spends at most that epsilon at ``delta``."""

    SECTION = "dp"
    TITLE = "DP-FedAvg (on when any of these is given)"

    clip_norm: float = option(1.0, metavar="C", help="L2 bound on each update")
    noise_multiplier: float | None = option(None, metavar="Z", help="the server adds "
                                            "N(0, (Z*C/m)^2) to the average of m updates")
    target_epsilon: float | None = option(None, metavar="EPS",
                                          help="the noise that spends EPS over the run")
    delta: float = option(1e-5, help="DP delta")

    def validate(self) -> None:
        number(self.clip_norm, "clip_norm", 0, low_open=True)
        require((self.noise_multiplier is None) != (self.target_epsilon is None),
                "noise_multiplier", "give exactly one of noise_multiplier and target_epsilon")
        if self.noise_multiplier is not None:
            number(self.noise_multiplier, "noise_multiplier", 0)
        if self.target_epsilon is not None:
            number(self.target_epsilon, "target_epsilon", 0, low_open=True)
        number(self.delta, "delta", 0, 1, low_open=True, high_open=True)


@dataclass(frozen=True, kw_only=True)
class DPSGDConfig(Section):
    """Sample-level DP-SGD inside each worker (Abadi et al. 2016, through Opacus): per-sample
    clipping plus noise, one accountant per worker for the whole run."""

    SECTION = "dp_sgd"
    TITLE = "DP-SGD in every worker (on when any of these is given)"

    noise_multiplier: float = option(1.0, flag="--dp-sgd-noise", metavar="Z",
                                     help="noise multiplier")
    max_grad_norm: float = option(1.0, flag="--dp-sgd-clip", metavar="C",
                                  help="per-sample gradient bound")
    delta: float = option(1e-5, flag="--dp-sgd-delta", help="each worker's DP delta")

    def validate(self) -> None:
        number(self.noise_multiplier, "noise_multiplier", 0)
        number(self.max_grad_norm, "max_grad_norm", 0, low_open=True)
        number(self.delta, "delta", 0, 1, low_open=True, high_open=True)


@dataclass(frozen=True, kw_only=True)
class CompressionConfig(Section):
    """How a worker's update is encoded for the (slow) upload."""

    SECTION = "compression"
    TITLE = "compressed uploads"

    method: CompressionMethod = option("none", flag="--compression", choices=COMPRESSIONS,
                         help="quantize (stochastic, --bits) or topk (--topk-fraction)")
    bits: int = option(8, help="quantization bits: 1, 2, 4, 8")
    topk_fraction: float = option(0.01, help="share of coordinates top-k sends")
    error_feedback: bool = option(True, help="top-k keeps the unsent residual for the next "
                                             "round")

    def validate(self) -> None:
        choice(self.method, "method", COMPRESSIONS)
        require(self.bits in QUANTIZE_BITS and not isinstance(self.bits, bool), "bits",
                f"unsupported bit width {self.bits!r}; "
                f"allowed: {', '.join(map(str, QUANTIZE_BITS))}")
        number(self.topk_fraction, "topk_fraction", 0, 1, low_open=True)


@dataclass(frozen=True, kw_only=True)
class SecAggConfig(Section):
    """Secure aggregation's parameters (Bonawitz et al. 2017), used with
    ``secure_aggregation=True``: the Shamir threshold t (any t of a round's clients recover a
    client that dropped out; fewer learn nothing), and the ring the masked vectors live in.
    Each client's ``[w*delta, w]`` is refused, never clipped, when a coordinate's magnitude
    exceeds ``value_range``; the fixed-point scale is the largest power of two at which the
    sum of a round's clients still fits the ring (:func:`fedlearn.secagg_portable.secagg_scale`)."""

    SECTION = "secagg"
    TITLE = "secure aggregation (with --secure-aggregation)"

    threshold: int | None = option(None, flag="--secagg-threshold", metavar="T",
                                   help="shares needed to recover a dropped client (default: "
                                        "a majority of the round's clients, n // 2 + 1)")
    ring_bits: int = option(32, flag="--secagg-ring-bits", metavar="BITS",
                            help="masked vectors live modulo 2^BITS: 16, 32 or 64")
    value_range: float = option(32768.0, flag="--secagg-range", metavar="R",
                                help="largest |w*delta| a client may mask (w: its example "
                                     "count, or 1 under DP); beyond it the update is refused")

    def validate(self) -> None:
        if self.threshold is not None:
            positive_int(self.threshold, "threshold", minimum=2)
        require(self.ring_bits in SECAGG_RING_BITS and not isinstance(self.ring_bits, bool),
                "ring_bits", f"unsupported ring {self.ring_bits!r}; allowed: "
                f"{', '.join(map(str, SECAGG_RING_BITS))}")
        number(self.value_range, "value_range", 0, low_open=True)
