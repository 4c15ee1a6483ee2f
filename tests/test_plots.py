import numpy as np
import torch

from fedlearn import plots


def test_figures_render(tmp_path):
    history = [{"round": r, "test_accuracy": 0.5 + r / 10, "test_loss": 1 / r} for r in (1, 2, 3)]
    labels = torch.tensor([0, 1, 2, 2])
    preds = torch.tensor([0, 2, 2, 2])
    cm = plots.confusion_matrix(labels, preds, num_classes=3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    figs = {
        "curve": plots.learning_curve({"fedavg": history}),
        "hist": plots.label_histograms(np.array([[5, 1, 0], [0, 3, 3]]), ["bob", "alice"]),
        "cm": plots.confusion_figure(cm),
        "grid": plots.digit_grid(torch.zeros(4, 1, 28, 28), labels, preds, columns=2),
        "raw": plots.digit_grid(torch.zeros(3, 28, 28, dtype=torch.uint8), labels[:3], columns=3),
        "availability": plots.availability_figure(
            [{"round": r, "availability": {"available": 50, "selected": 13, "goal": 10,
                                           "completed": 9, "late": 1, "stragglers": 1,
                                           "dropped": 1, "declined": 1}} for r in (1, 2)]),
        "heat": plots.client_label_heatmaps({"iid": np.ones((30, 10)), "shards": np.eye(10)}),
        "personal": plots.personalization_figure([{"before": 0.8, "after": 0.9},
                                                  {"before": 0.7, "after": 0.95}]),
    }
    for name, fig in figs.items():
        path = plots.save_figure(fig, tmp_path / f"{name}.png")
        assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 2000
