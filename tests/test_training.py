import torch

from fedlearn.config import TrainPlan
from fedlearn.models import build_model
from fedlearn.training import evaluate, make_optimizer, train_epochs


def test_local_training_learns_and_is_seeded(synthetic):
    x, y = synthetic
    plan = TrainPlan(epochs=3, batch_size=20, lr=0.05, momentum=0.9)
    runs = []
    for _ in range(2):
        model = build_model("mlp2nn", seed=0)
        before = evaluate(model, x, y)["loss"]
        metrics = train_epochs(model, make_optimizer(model, plan), x, y, plan, seed=1)
        runs.append(model.state_dict())
        assert metrics["steps"] == 30 and metrics["examples"] == 600
    assert evaluate(model, x, y)["accuracy"] > 0.9 and evaluate(model, x, y)["loss"] < before
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_batch_slices_compose_into_a_full_epoch(synthetic):
    x, y = synthetic
    plan = TrainPlan(batch_size=32, lr=0.05, momentum=0.0)
    whole = build_model("mlp2nn", seed=0)
    train_epochs(whole, make_optimizer(whole, plan), x, y, plan, seed=4)
    parts = build_model("mlp2nn", seed=0)
    opt = make_optimizer(parts, plan)
    for b in range(7):  # ceil(200 / 32) batches, the last one of 8 samples
        train_epochs(parts, opt, x, y, plan, seed=4, batches=(b, b + 1))
    assert all(torch.allclose(whole.state_dict()[k], parts.state_dict()[k])
               for k in whole.state_dict())
