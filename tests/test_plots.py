import numpy as np
import pytest
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


def test_rounds_to_target_figure_draws_each_setting_and_the_paper_mark(tmp_path):
    runs = {"fedavg-iid": {"accuracy": [0.95, 0.98, 0.991], "paper_rounds": 20},
            "fedsgd-iid": {"accuracy": [0.5 + i / 400 for i in range(1, 190)], "paper_rounds": 626}}
    fig = plots.rounds_to_target_figure(runs)
    assert len(fig.axes) == 2  # the whole climb, and a zoom near the target
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 2]
    assert [len(c.get_xdata()) for c in curves] == [3, 189]
    assert list(curves[0].get_ydata()) == [95.0, 98.0, 99.1]
    paper_marks = sorted(line.get_xdata()[0] for line in ax.get_lines()
                         if line.get_linestyle() == ":")
    assert paper_marks == [20, 626]
    assert ax.get_xscale() == "log"
    assert plots.save_figure(fig, tmp_path / "t2.png").stat().st_size > 2000


def test_learning_curve_can_show_the_error_on_a_log_axis():
    history = [{"round": r, "test_accuracy": a, "test_loss": 0.1 / r}
               for r, a in ((1, 0.98), (2, 0.99), (3, 0.995))]
    error = plots.learning_curve({"fedavg": history}, metric="error").axes[0]
    assert error.get_yscale() == "log" and error.get_ylabel() == "test error (%)"
    assert np.allclose(error.get_lines()[0].get_ydata(), [2.0, 1.0, 0.5])
    accuracy = plots.learning_curve({"fedavg": history}).axes[0]  # the default is unchanged
    assert accuracy.get_yscale() == "linear" and accuracy.get_title() == "Test accuracy per round"
    assert np.allclose(accuracy.get_lines()[0].get_ydata(), [98.0, 99.0, 99.5])
    with pytest.raises(ValueError, match="metric"):
        plots.learning_curve({"fedavg": history}, metric="loss")
