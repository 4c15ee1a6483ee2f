import math

import pytest
import torch

from fedlearn.config import CompressionConfig, ConfigError
from fedlearn.updates.compression import (
    UpdateCompressor,
    densify,
    dequantize,
    payload_nbytes,
    quantize,
    sparse_problem,
    topk_sparsify,
    topk_with_feedback,
)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantization_error_is_bounded_by_one_level(bits):
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    q = quantize(x, bits, torch.Generator().manual_seed(1))
    step = (x.max() - x.min()) / (2 ** bits - 1)
    assert (dequantize(q, x.shape) - x).abs().max() <= step + 1e-6
    assert q["codes"].max() <= 2 ** bits - 1


def test_quantization_is_unbiased():
    x = torch.tensor([0.0, 0.3, 1.0])
    g = torch.Generator().manual_seed(0)
    mean = torch.stack([dequantize(quantize(x, 1, g), x.shape) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, x, atol=0.03)


def test_topk_keeps_the_largest():
    s = topk_sparsify(torch.tensor([0.1, -5.0, 0.2, 3.0]), 0.5)
    assert sorted(s["indices"].tolist()) == [1, 3]
    assert densify(s, (4,)).tolist() == [0.0, -5.0, 0.0, 3.0]


def test_error_feedback_bookkeeping():
    c = UpdateCompressor(CompressionConfig(method="topk", topk_fraction=0.25))
    g = torch.Generator()
    first = {"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    sent = UpdateCompressor.decode(c.encode(first, g), first)
    assert sent["w"].tolist() == [0.0, 0.0, 0.0, 4.0]
    assert c.residual["w"].tolist() == [1.0, 2.0, 3.0, 0.0]  # sent + residual == input
    second = {"w": torch.tensor([0.0, 0.0, 0.5, 0.0])}
    sent = UpdateCompressor.decode(c.encode(second, g), second)
    assert sent["w"].tolist() == [0.0, 0.0, 3.5, 0.0]  # the residual made coordinate 2 win
    assert c.residual["w"].tolist() == [1.0, 2.0, 0.0, 0.0]
    restored = UpdateCompressor(c.config)
    restored.load_state_dict(c.state_dict())
    assert torch.equal(restored.residual["w"], c.residual["w"])


def test_byte_counts_equal_the_payload_sizes():
    delta = {"a": torch.randn(100, 7), "b": torch.randn(13)}
    g = torch.Generator().manual_seed(0)
    for bits in (8, 4):
        payload = UpdateCompressor(CompressionConfig(method="quantize", bits=bits)).encode(delta, g)
        packed = sum(math.ceil(p["codes"].numel() * bits / 8) + 8 for p in payload.values())
        assert payload_nbytes(payload, bits) == packed
    assert payload_nbytes({k: quantize(v, 8, g) for k, v in delta.items()}, 8) == sum(
        t.numel() * t.element_size() for p in
        {k: quantize(v, 8, g) for k, v in delta.items()}.values() for t in p.values())
    sparse = UpdateCompressor(CompressionConfig(method="topk", topk_fraction=0.1)).encode(delta, g)
    assert payload_nbytes(sparse) == (70 + 2) * 8  # int32 index + float32 value each


@pytest.mark.parametrize("kwargs,argument", [
    ({"method": "zip"}, "method"), ({"bits": 3}, "bits"), ({"bits": 16}, "bits"),
    ({"topk_fraction": 0.0}, "topk_fraction"), ({"topk_fraction": 1.5}, "topk_fraction"),
])
def test_bad_compression_settings(kwargs, argument):
    with pytest.raises(ConfigError) as info:
        CompressionConfig(**kwargs)
    assert info.value.path == f"compression.{argument}"


def test_a_quantized_update_from_elsewhere_is_checked_before_it_is_decoded():
    from fedlearn.portable import quantize_change
    from fedlearn.updates.compression import quantized_problem

    reference = {"w": torch.zeros(2, 3), "count": torch.tensor(4)}
    delta = {"w": torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.25, 2.0]]), "count": torch.tensor(1)}
    good = quantize_change(delta, 4, torch.Generator().manual_seed(0))
    assert quantized_problem(good, reference, 4) is None
    assert good["count"] == {"exact": torch.tensor(1)}  # a counter is sent exactly
    assert good["w"]["codes"].dtype == torch.uint8 and int(good["w"]["codes"].max()) == 15
    assert "3-bit values" in quantized_problem(good, reference, 3)  # a code of 15 > 7
    assert "one entry per weight" in quantized_problem({"w": good["w"]}, reference, 4)
    wrong_count = {**good, "count": {"exact": torch.tensor(1.0)}}
    assert "counter" in quantized_problem(wrong_count, reference, 4)
    short = {**good, "w": {**good["w"], "codes": good["w"]["codes"][:5]}}
    assert "6 4-bit values" in quantized_problem(short, reference, 4)
    bad_scale = {**good, "w": {**good["w"], "scale": torch.tensor([float("nan")])}}
    assert "finite" in quantized_problem(bad_scale, reference, 4)
    assert "codes, low and scale" in quantized_problem({**good, "w": {"codes": 1}}, reference, 4)


def test_datasites_quantize_in_their_code_and_refuse_what_their_code_cannot_do():
    from fedlearn.config import ExperimentConfig

    quantize = ExperimentConfig(compression=CompressionConfig(method="quantize", bits=8))
    quantize.check_workers(2, remote=["bob", "alice"], compressing=["bob", "alice"])
    with pytest.raises(ConfigError, match="compression.method.*must run inside"):
        quantize.check_workers(2, remote=["bob", "alice"], compressing=["bob"])
    topk = ExperimentConfig(compression=CompressionConfig(method="topk", topk_fraction=0.01))
    topk.check_workers(2, remote=["bob", "alice"], compressing=["bob", "alice"])
    with pytest.raises(ConfigError, match="compression.method.*must run inside"):
        topk.check_workers(2, remote=["bob", "alice"], compressing=["alice"])
    forgetful = ExperimentConfig(compression=CompressionConfig(
        method="topk", topk_fraction=0.01, error_feedback=False))
    with pytest.raises(ConfigError, match="error_feedback.*always keeps the owner's residual"):
        forgetful.check_workers(2, remote=["bob", "alice"], compressing=["bob", "alice"])
    topk_secure = ExperimentConfig(compression=topk.compression, secure_aggregation=True)
    with pytest.raises(ConfigError, match="top-k does not combine with secure aggregation"):
        topk_secure.check_workers(2, remote=["bob", "alice"], masking=["bob", "alice"])
    secure = ExperimentConfig(compression=CompressionConfig(method="quantize", bits=8),
                              secure_aggregation=True)
    with pytest.raises(ConfigError, match="ring elements.*--secagg-ring-bits 16"):
        secure.check_workers(2, remote=["bob", "alice"], masking=["bob", "alice"])


def test_topk_with_feedback_by_hand():
    residual = {}
    delta = {"w": torch.tensor([0.1, -5.0, 0.2, 3.0]), "count": torch.tensor(2)}
    sent = topk_with_feedback(delta, residual, 0.25)  # one of four entries
    assert sent["count"] == {"exact": torch.tensor(2)}  # a counter goes exactly, no residual
    assert sent["w"]["indices"].tolist() == [1] and sent["w"]["values"].tolist() == [-5.0]
    assert residual["w"].tolist() == pytest.approx([0.1, 0.0, 0.2, 3.0]) and "count" not in residual
    # next round: 3.0 left behind plus 0.5 now beats every new entry
    sent = topk_with_feedback({"w": torch.tensor([0.0, 0.0, 0.0, 0.5])}, residual, 0.25)
    assert sent["w"]["indices"].tolist() == [3] and sent["w"]["values"].tolist() == [3.5]
    assert residual["w"].tolist() == pytest.approx([0.1, 0.0, 0.2, 0.0])


def test_a_top_k_payload_from_elsewhere_is_checked_before_it_is_decoded():
    reference = {"w": torch.zeros(2, 5), "count": torch.tensor(0)}
    good = topk_with_feedback({"w": torch.arange(10.0).reshape(2, 5), "count": torch.tensor(1)},
                              {}, 0.2)
    assert sparse_problem(good, reference, 0.2) is None
    assert "3 distinct int32" in sparse_problem(good, reference, 0.3)  # 3 expected, 2 sent
    assert "one entry per weight" in sparse_problem({"w": good["w"]}, reference, 0.2)
    for bad, why in (({"indices": good["w"]["indices"].long()}, "int32"),
                     ({"indices": torch.tensor([9, 9], dtype=torch.int32)}, "distinct"),
                     ({"indices": torch.tensor([0, 10], dtype=torch.int32)}, "below 10"),
                     ({"indices": torch.tensor([-1, 3], dtype=torch.int32)}, "positions"),
                     ({"values": torch.tensor([1.0, float("inf")])}, "finite float32"),
                     ({"values": torch.tensor([1.0, 2.0], dtype=torch.float64)}, "float32")):
        assert why in sparse_problem({**good, "w": {**good["w"], **bad}}, reference, 0.2)
    assert "indices and values" in sparse_problem({**good, "w": {"delta": 1}}, reference, 0.2)
    assert "counter" in sparse_problem({**good, "count": {"exact": torch.tensor(1.0)}},
                                       reference, 0.2)
