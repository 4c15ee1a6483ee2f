import pytest
import torch

from fedlearn.aggregation import apply_delta, fedavg, state_delta, weighted_average


def test_fedavg_weights_by_examples_hand_computed():
    # Prepare: Bob trained on 1 example, Alice on 3
    bob = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.0])}
    alice = {"w": torch.tensor([5.0, 6.0]), "b": torch.tensor([4.0])}
    # Execute
    out = fedavg([bob, alice], [1, 3])
    # Assert: (1*1 + 3*5)/4 = 4, (1*2 + 3*6)/4 = 5, (0 + 12)/4 = 3 — not the unweighted 3, 4, 2
    assert torch.equal(out["w"], torch.tensor([4.0, 5.0]))
    assert torch.equal(out["b"], torch.tensor([3.0]))


def test_three_unequal_workers():
    states = [{"x": torch.tensor([[2.0]])}, {"x": torch.tensor([[4.0]])},
              {"x": torch.tensor([[10.0]])}]
    # (100*2 + 50*4 + 50*10) / 200 = 900/200 = 4.5
    assert fedavg(states, [100, 50, 50])["x"].item() == 4.5


def test_zero_weight_worker_is_ignored_and_dtype_kept():
    out = weighted_average([{"x": torch.tensor([1.0], dtype=torch.float32)},
                            {"x": torch.tensor([100.0])}], [2, 0])
    assert out["x"].item() == 1.0 and out["x"].dtype == torch.float32


@pytest.mark.parametrize("states,weights,match", [
    ([], [], "no states"),
    ([{"x": torch.zeros(1)}], [1, 2], "weights"),
    ([{"x": torch.zeros(1)}, {"y": torch.zeros(1)}], [1, 1], "keys"),
    ([{"x": torch.zeros(1)}], [0], "positive"),
    ([{"x": torch.zeros(1)}, {"x": torch.zeros(1)}], [-1, 2], "positive"),
])
def test_bad_inputs(states, weights, match):
    with pytest.raises(ValueError, match=match):
        weighted_average(states, weights)


def test_delta_round_trip():
    old = {"x": torch.tensor([1.0, 2.0])}
    new = {"x": torch.tensor([1.5, 1.0])}
    d = state_delta(new, old)
    assert torch.equal(d["x"], torch.tensor([0.5, -1.0]))
    assert torch.equal(apply_delta(old, d)["x"], new["x"])
    assert torch.equal(old["x"], torch.tensor([1.0, 2.0]))  # inputs untouched
