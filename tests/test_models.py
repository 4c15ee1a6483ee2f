import pytest
import torch

from fedlearn.models import build_model


@pytest.mark.parametrize("name,params", [("tutorial_cnn", 431_080), ("mcmahan_cnn", 1_663_370),
                                         ("mlp2nn", 199_210), ("dp_cnn", 26_010)])
def test_shapes_and_parameter_counts(name, params):
    model = build_model(name)
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) == params


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model("tutorial_cnn", seed=5)
    after = torch.rand(1)
    b = build_model("tutorial_cnn", seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(before, after)


def test_unknown_model():
    with pytest.raises(ValueError, match="allowed: tutorial_cnn"):
        build_model("vgg")
