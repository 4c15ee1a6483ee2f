import pytest
import torch

from fedlearn.aggregation.robust import (
    coordinate_median,
    krum_select,
    trimmed_mean,
    update_norm,
    validate_update,
)

U = [{"w": torch.tensor([1.0, 10.0])}, {"w": torch.tensor([2.0, 20.0])},
     {"w": torch.tensor([3.0, 30.0])}, {"w": torch.tensor([100.0, -100.0])}]


def test_coordinate_median_hand_computed():
    # sorted first coordinate 1, 2, 3, 100 -> (2 + 3) / 2; second -100, 10, 20, 30 -> 15
    assert coordinate_median(U)["w"].tolist() == [2.5, 15.0]
    assert coordinate_median(U[:3])["w"].tolist() == [2.0, 20.0]


def test_trimmed_mean_hand_computed():
    # n=4, trim 0.25 -> drop 1 from each end: mean(2, 3) = 2.5, mean(10, 20) = 15
    assert trimmed_mean(U, 0.25)["w"].tolist() == [2.5, 15.0]
    assert trimmed_mean(U, 0.0)["w"].tolist() == [26.5, -10.0]  # plain mean
    with pytest.raises(ValueError, match="trim_fraction"):
        trimmed_mean(U, 0.5)


def test_krum_picks_a_central_update():
    ups = [{"w": torch.tensor([x, 0.0])} for x in (1.0, 1.1, 0.9, 1.05, 50.0)]
    assert krum_select(ups, num_byzantine=1) in (0, 3)  # the ones closest to the honest crowd
    with pytest.raises(ValueError, match="2f \\+ 3"):
        krum_select(ups[:4], num_byzantine=1)


def test_update_norm():
    assert update_norm({"a": torch.tensor([3.0]), "b": torch.tensor([4.0])}) == 5.0


REF = {"w": torch.zeros(2, 2), "b": torch.zeros(2)}


@pytest.mark.parametrize("delta,n,match", [
    ({"w": torch.zeros(2, 2)}, 10, "keys differ"),
    ({"w": torch.zeros(4), "b": torch.zeros(2)}, 10, "shape"),
    ({"w": torch.zeros(2, 2, dtype=torch.float64), "b": torch.zeros(2)}, 10, "float64"),
    ({"w": torch.full((2, 2), float("nan")), "b": torch.zeros(2)}, 10, "NaN"),
    ({"w": torch.full((2, 2), float("inf")), "b": torch.zeros(2)}, 10, "infinite"),
    ({"w": torch.zeros(2, 2), "b": torch.zeros(2)}, 0, "example count"),
    ({"w": torch.zeros(2, 2), "b": torch.zeros(2)}, 101, "at most 100"),
    ({"w": torch.ones(2, 2), "b": torch.zeros(2)}, 10, "norm 2 exceeds"),
    ("not a dict", 10, "keys differ"),
])
def test_validation_names_the_problem(delta, n, match):
    assert match in validate_update(delta, REF, n, max_examples=100, max_norm=1.5)


def test_valid_update_passes():
    assert validate_update({"w": torch.ones(2, 2) * 0.1, "b": torch.zeros(2)}, REF, 5,
                           max_examples=100, max_norm=1.0) is None
