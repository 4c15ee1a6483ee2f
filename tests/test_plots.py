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


def _within(box, xy):
    """Which display points ``xy`` (N, 2) lie inside ``box``."""
    return ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1)
            & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1))


def _under_legends(fig) -> list[str]:
    """What each legend of the drawn figure covers: curve points (and the segments between
    them), bars, scatter points and images, in display coordinates; and any legend that
    sticks out of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PathCollection
    from matplotlib.transforms import Bbox

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    boxes = [legend.get_window_extent(renderer) for legend in legends]
    page = fig.bbox.padded(1)
    found = [f"a legend outside the figure: {box}" for box in boxes
             if not _within(page, box.get_points()).all()]

    def points_under(xy, what, inside):
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(axis=1)]
        xy = xy[_within(inside, xy)]  # drawn only inside its axes
        found.extend(what for box in boxes if _within(box, xy).any())

    def with_segments(xy):
        """The points and 50 more along each segment between them."""
        if len(xy) < 2:
            return xy
        t = np.linspace(0, 1, 50)[:, None, None]
        return np.vstack([xy, (xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2)])

    for ax in fig.axes:
        inside = ax.get_window_extent(renderer)
        for line in ax.get_lines():
            xy = line.get_transform().transform(
                np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
            points_under(with_segments(xy), f"line {line.get_label()!r}", inside)
        for collection in ax.collections:
            if isinstance(collection, LineCollection):  # hlines, vlines
                for segment in collection.get_segments():
                    xy = collection.get_transform().transform(segment)
                    points_under(with_segments(xy), f"segments {collection.get_label()!r}",
                                 inside)
            elif isinstance(collection, PathCollection):  # scatter
                xy = collection.get_offset_transform().transform(collection.get_offsets())
                points_under(xy, f"points {collection.get_label()!r}", inside)
        for artist in [*ax.patches, *ax.images]:
            shown = Bbox.intersection(artist.get_window_extent(renderer), inside)
            if shown is None or shown.width < 1 or shown.height < 1:
                continue
            found.extend(f"{type(artist).__name__} {artist.get_label()!r}" for box in boxes
                         if Bbox.intersection(shown, box) is not None)
    return found


def _crowded_figures() -> dict:
    """Each figure function with data in every corner of its axes: a legend inside the axes
    would cover some of it wherever it went."""
    rng = np.random.default_rng(0)
    zigzag = [{"round": r, "test_accuracy": [0.1, 0.99][r % 2] - r / 1000,
               "test_loss": [0.01, 2.0][r % 2]} for r in range(1, 21)]
    shifted = [{**h, "test_accuracy": 1.09 - h["test_accuracy"], "test_loss": 2.01 - h["test_loss"]}
               for h in zigzag]
    devices = [{"round": r, "skipped": r == 3,
                "availability": {"available": 50, "selected": 50, "goal": 38, "completed": 20,
                                 "late": 10, "stragglers": 10, "dropped": 5, "declined": 5}}
               for r in range(1, 9)]
    runs = {name: {"accuracy": list(np.linspace(0.0, 1.0, n)), "paper_rounds": n}
            for name, n in (("a", 30), ("b", 300), ("c", 800))}
    grid = np.linspace(0.5, 1.0, 15)
    return {
        "learning_curve": plots.learning_curve({"up": zigzag, "down": shifted}),
        "label_histograms": plots.label_histograms(np.full((3, 10), 3000), ["bob", "alice", "c"]),
        "availability_figure": plots.availability_figure(devices),
        "personalization_figure": plots.personalization_figure(
            [{"before": b, "after": a} for b in grid for a in grid]),
        "rounds_to_target_figure": plots.rounds_to_target_figure(runs),
        "client_label_heatmaps": plots.client_label_heatmaps({"x": rng.random((20, 10))}),
        "confusion_figure": plots.confusion_figure(np.eye(10, dtype=int) * 100),
    }


def test_no_legend_covers_data():
    for name, fig in _crowded_figures().items():
        assert _under_legends(fig) == [], name


def test_the_legend_check_sees_a_legend_over_data():
    """The check above can fail: a legend inside the axes, over the bars, is found."""
    fig = plots.label_histograms(np.full((2, 10), 3000), ["bob", "alice"])
    fig.legends.clear()
    fig.axes[0].legend(loc="center")
    assert any(what.startswith("Rectangle") for what in _under_legends(fig))
    fig = plots.learning_curve({"up": [{"round": r, "test_accuracy": r / 10, "test_loss": 1 / r}
                                       for r in range(1, 10)]})
    fig.legends.clear()
    fig.axes[0].legend(loc="center")
    assert "line 'up'" in _under_legends(fig)


def test_availability_marks_only_skipped_rounds_and_the_goal_per_round():
    history = [{"round": r, "skipped": r == 2,
                "availability": {"available": 40, "selected": 13, "goal": 10, "completed": c,
                                 "late": 0, "stragglers": 13 - c, "dropped": 0, "declined": 0}}
               for r, c in ((1, 10), (2, 0), (3, 6))]
    ax = plots.availability_figure(history).axes[0]
    assert [t.get_text() for t in ax.texts] == ["skipped"]  # round 3, 6 of 10, still counts
    goal, = [c for c in ax.collections if "goal" in c.get_label()]
    assert [seg[0][1] for seg in goal.get_segments()] == [10, 10, 10]


def test_log_axes_are_labelled_with_plain_numbers():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    runs = {"a": {"accuracy": list(np.linspace(0.5, 1.0, 300)), "paper_rounds": 200}}
    history = [{"round": r, "test_accuracy": 0.9, "test_loss": 0.06 / r} for r in (1, 2)]
    for fig, axis in ((plots.rounds_to_target_figure(runs), "x"),
                      (plots.learning_curve({"a": history}), "y")):
        FigureCanvasAgg(fig).draw()
        ax = fig.axes[-1] if axis == "y" else fig.axes[0]
        ticks = getattr(ax, f"get_{axis}ticklabels")(minor=False) + \
            getattr(ax, f"get_{axis}ticklabels")(minor=True)
        low, high = sorted(getattr(ax, f"get_{axis}lim")())
        shown = [float(t.get_text()) for t in ticks
                 if t.get_text() and low <= t.get_position()[axis == "y"] <= high]
        assert len(shown) >= 3, shown  # numbers a reader reads, not 10^1 (float() would fail)
    assert 0.03 in shown  # under a decade: the minor ticks are labelled too
