
import math
import warnings

import pytest
import torch

from fedlearn.config import ConfigError, DPConfig
from fedlearn.updates.privacy import (
    CentralPrivacy,
    add_gaussian_noise,
    clip_update,
    dp_average,
    global_norm,
    noise_for_target_epsilon,
)


def test_clipping_hand_checked():
    update = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([4.0])}  # norm 5
    clipped, norm = clip_update(update, 1.0)
    assert norm == 5.0
    assert torch.allclose(clipped["a"], torch.tensor([0.6, 0.0])) and \
        torch.allclose(clipped["b"], torch.tensor([0.8]))
    same, _ = clip_update(update, 10.0)
    assert torch.equal(same["a"], update["a"]) and global_norm(same) == 5.0


def test_noise_is_seeded_and_has_the_asked_std():
    zeros = {"w": torch.zeros(200_000)}
    a = add_gaussian_noise(zeros, 0.5, torch.Generator().manual_seed(1))
    b = add_gaussian_noise(zeros, 0.5, torch.Generator().manual_seed(1))
    assert torch.equal(a["w"], b["w"]) and abs(a["w"].std().item() - 0.5) < 0.01
    assert torch.equal(add_gaussian_noise(zeros, 0.0, torch.Generator())["w"], zeros["w"])


def test_dp_average_uses_the_sampled_count():
    ups = [{"w": torch.tensor([1.0])}, {"w": torch.tensor([3.0])}]
    assert dp_average(ups, 4)["w"].item() == 1.0  # (1 + 3) / 4 sampled, one dropped out


def test_golden_epsilon_from_opacus_rdp():
    # Opacus's own test: sigma 1.5, q 0.04, 2250 steps -> eps ~7.33 at delta 1e-5
    dp = CentralPrivacy(DPConfig(noise_multiplier=1.5, delta=1e-5), sample_rate=0.04, rounds=2250)
    for _ in range(2250):
        dp.accountant.step(noise_multiplier=1.5, sample_rate=0.04)
    assert dp.epsilon() == pytest.approx(7.33, abs=0.05)


def test_target_epsilon_picks_enough_noise():
    z = noise_for_target_epsilon(3.0, 1e-5, sample_rate=0.1, rounds=50)
    dp = CentralPrivacy(DPConfig(target_epsilon=3.0), sample_rate=0.1, rounds=50)
    assert dp.noise_multiplier == z
    for _ in range(50):
        dp.accountant.step(noise_multiplier=z, sample_rate=0.1)
    assert 2.5 < dp.epsilon() <= 3.0


def test_clipping_without_noise_spends_an_infinite_epsilon_without_a_warning():
    dp = CentralPrivacy(DPConfig(noise_multiplier=0.0), sample_rate=1.0, rounds=2)
    assert dp.epsilon() == 0.0  # nothing released yet
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Opacus, asked, warns about its orders of alpha
        noised = dp.add_noise({"w": torch.tensor([0.5])}, 4, torch.Generator().manual_seed(0))
        assert noised["w"].item() == 0.5 and dp.epsilon() == math.inf


def test_accountant_state_round_trips():
    dp = CentralPrivacy(DPConfig(noise_multiplier=1.0), sample_rate=0.5, rounds=3)
    dp.accountant.step(noise_multiplier=1.0, sample_rate=0.5)
    again = CentralPrivacy(DPConfig(noise_multiplier=1.0), sample_rate=0.5, rounds=3)
    again.load_state_dict(dp.state_dict())
    assert again.epsilon() == dp.epsilon() > 0


@pytest.mark.parametrize("kwargs,argument", [
    ({"clip_norm": 0, "noise_multiplier": 1.0}, "clip_norm"),
    ({"noise_multiplier": -0.1}, "noise_multiplier"),
    ({"target_epsilon": 0.0}, "target_epsilon"),
    ({"target_epsilon": -1.0}, "target_epsilon"),
    ({"noise_multiplier": 1.0, "delta": 0.0}, "delta"),
    ({"noise_multiplier": 1.0, "delta": 1.0}, "delta"),
    ({}, "noise_multiplier"),
    ({"noise_multiplier": 1.0, "target_epsilon": 2.0}, "noise_multiplier"),
])
def test_bad_dp_settings(kwargs, argument):
    with pytest.raises(ConfigError) as info:
        DPConfig(**kwargs)
    assert info.value.path == f"dp.{argument}"


@pytest.mark.parametrize("z,clip,sampled", [(1.0, 2.0, 4), (0.5, 1.0, 2), (2.0, 0.5, 10)])
def test_dp_fedavg_adds_noise_of_std_z_times_c_over_m(z, clip, sampled):
    """The server's side of the round, with every update zero: what comes out is the noise
    alone, and its spread is z·C/m (McMahan et al. 2018). Forgetting the noise gives zeros."""
    from fedlearn.aggregation.server_side import ServerSide
    from fedlearn.config import ExperimentConfig, FederationConfig
    from fedlearn.updates import Update

    cfg = ExperimentConfig(dp=DPConfig(clip_norm=clip, noise_multiplier=z),
                           federation=FederationConfig(rounds=3, device="cpu"))
    server_side = ServerSide(cfg, num_workers=sampled, per_round=sampled)
    names = [f"c{i}" for i in range(sampled)]
    reference = {"w": torch.zeros(200_000)}
    arrived = [Update(n, {"w": torch.zeros(200_000)}, 10) for n in names]
    aggregate, report = server_side.combine(arrived, names, reference, 1,
                                            torch.Generator().manual_seed(0), unmask=None)
    noise = aggregate["w"]
    assert noise.std().item() == pytest.approx(z * clip / sampled, rel=0.02)
    assert abs(noise.mean().item()) < 0.01 * z * clip / sampled + 1e-3
    assert report["noise_multiplier"] == z and report["epsilon"] > 0
