"""8-bit updates from Datasites: the approved code quantizes, and only the codes leave.

The plain function takes ``quantize_bits`` and ``wire_seed`` in its plan and returns the
codes of :func:`fedlearn.portable.quantize_change` — the very function in-process clients
run — so a Datasite's quantized update is bit for bit an in-process client's, and the bytes
that cross HTTP shrink with it.
"""
import numpy as np
import pytest
import torch

from fedlearn.config import CompressionConfig, ExperimentConfig, FederationConfig, TrainPlan
from fedlearn.data import MNIST_NORMALISATION, normalise
from fedlearn.server.federation import run_federation

pytestmark = [pytest.mark.pysyft, pytest.mark.slow]
EIGHT_BIT = CompressionConfig(method="quantize", bits=8)


def uint8_digits(n: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)


def config(compression=EIGHT_BIT) -> ExperimentConfig:
    # bn_cnn: BatchNorm's counter travels exactly beside the 8-bit codes
    return ExperimentConfig(plan=TrainPlan(batch_size=32, lr=0.05), seed=3,
                            federation=FederationConfig(model="bn_cnn", rounds=2, device="cpu"),
                            compression=compression)


class ResponseBytes:
    """The bytes of every HTTP response body this process receives (requests.Session)."""

    def __init__(self, monkeypatch):
        import requests

        self.total = 0
        original = requests.Session.send

        def send(session, request, **kwargs):
            response = original(session, request, **kwargs)
            self.total += len(response.content)
            return response

        monkeypatch.setattr(requests.Session, "send", send)


def digits_for(cfg: ExperimentConfig):
    """240 random uint8 digits, normalised, and their parts as ``cfg`` partitions them."""
    from fedlearn.workers import make_virtual_workers

    images, labels = uint8_digits(240)
    x, y = normalise(torch.as_tensor(images), MNIST_NORMALISATION), torch.as_tensor(labels)
    _, parts = make_virtual_workers(x, y, cfg)
    return images, labels, x, y, parts


@pytest.fixture(scope="module")
def digits():
    return digits_for(config())


def datasite_run(digits, cfg):
    from fedlearn.backends.pysyft import launch_syft_workers

    images, labels, x, y, parts = digits
    sites, workers = launch_syft_workers(images, labels, parts, cfg.partition.workers,
                                         model="bn_cnn", max_calls=6)
    try:
        return run_federation(workers, cfg, x[:100], y[:100]), workers
    finally:
        for site in sites:
            site.land()


def test_a_datasite_quantizes_exactly_as_an_in_process_client(digits):
    from fedlearn.workers import make_virtual_workers

    images, labels, x, y, parts = digits
    expected = run_federation(make_virtual_workers(x, y, config())[0], config(), x[:100], y[:100])
    got, workers = datasite_run(digits, config())
    assert all(w.quantize_bits == 8 for w in workers)
    for k, v in expected.weights.items():
        assert torch.equal(got.weights[k], v), k
    assert got.weights["bn1.num_batches_tracked"].dtype == torch.int64
    assert [h["bytes_up"] for h in got.history] == [h["bytes_up"] for h in expected.history]


def test_over_http_the_responses_shrink_with_the_codes(digits, monkeypatch):
    """One pair of served Datasites, one approved function (it quantizes when the plan asks):
    a float32 run, then an 8-bit run, each counted from its first call to its last."""
    from fedlearn.backends.pysyft import launch_syft_workers

    images, labels, x, y, parts = digits
    counter = ResponseBytes(monkeypatch)
    sites, workers = launch_syft_workers(images, labels, parts, config().partition.workers,
                                         model="bn_cnn", max_calls=12, port="auto")
    try:
        runs, counted = [], []
        for cfg in (config(CompressionConfig()), config()):  # float32 first: it sets no bits
            before = counter.total
            runs.append(run_federation(workers, cfg, x[:100], y[:100]))
            counted.append(counter.total - before)
    finally:
        for site in sites:
            site.land()
    (plain, quantized), (plain_bytes, quantized_bytes) = runs, counted
    assert all(w.quantize_bits == 8 for w in workers)  # the second run was the 8-bit one
    estimate = [sum(h["bytes_up"].values()) for h in (plain.history[0], quantized.history[0])]
    assert estimate[0] / estimate[1] > 3.5  # fedlearn's own count: 8 bits a value, not 32
    # what really came back over HTTP (the same Datasites, logins and approval for both runs)
    saved = plain_bytes - quantized_bytes
    print(f"HTTP responses: float32 {plain_bytes:,} B, 8-bit {quantized_bytes:,} B; "
          f"estimate per round {estimate[0]:,} vs {estimate[1]:,} B")
    assert saved > 0.5 * (estimate[0] - estimate[1]) * len(plain.history), (plain_bytes,
                                                                             quantized_bytes)


def test_the_approved_code_refuses_a_quantization_plan_out_of_bounds(digits):
    import dataclasses

    from fedlearn.backends.pysyft import launch_syft_workers
    from fedlearn.backends.pysyft.scientist import InputRefusedError
    from fedlearn.models import build_model

    images, labels, _, _, parts = digits
    sites, workers = launch_syft_workers(images, labels, parts[:1], ["bob"], model="bn_cnn",
                                         max_calls=4)
    try:
        bob, weights = workers[0], build_model("bn_cnn", seed=0).state_dict()
        plan = dataclasses.asdict(TrainPlan(batch_size=32))
        for bad, why in (({"quantize_bits": 9, "wire_seed": 1}, "quantize_bits must be in"),
                         ({"quantize_bits": 8}, "come together"),
                         ({"quantize_bits": 8.0, "wire_seed": 1}, "must be int")):
            with pytest.raises(InputRefusedError, match=why):
                bob._call(weights, "fit", {**plan, **bad}, 1)
    finally:
        sites[0].land()
