"""Figures people can look at. Each function returns a matplotlib ``Figure``.

Figures are built without pyplot, so they work the same headless (CLI, tests)
and inline in Jupyter, where a returned Figure displays itself. Legends sit outside
the axes (:func:`_legend_outside`), where they cannot cover data.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from fedlearn.data import MNIST_MEAN, MNIST_STD


def _legend_outside(fig: Figure, ax, *, loc: str = "outside right upper", **kwargs):
    """``ax``'s legend entries as a figure legend beside the axes (the constrained layout
    makes room for it), so it never covers a curve, a bar or a point."""
    handles, labels = ax.get_legend_handles_labels()
    return fig.legend(handles, labels, loc=loc, **kwargs)


def _plain_log_ticks(axis) -> None:
    """A log axis labelled 1, 10, 100 or 0.03, 0.05 rather than 10^0 or 3x10^-2: every tick
    where the axis spans less than a decade, else the decades and the 2s and 5s between."""

    def minor(value, _):
        low, high = sorted(axis.get_view_interval())
        few = low > 0 and high / low < 10
        return f"{value:.2g}" if few or f"{value:.0e}"[0] in "25" else ""

    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(FuncFormatter(minor))


def learning_curve(histories: Mapping[str, Sequence[dict]], *, x: str = "round",
                   title: str | None = None, metric: str = "accuracy") -> Figure:
    """Test accuracy (or error) and loss per round for one or more runs, keyed by label.

    ``metric="error"`` plots the test error, 100% minus the accuracy, on a log axis: near
    99% an accuracy axis spans a point, while the error halving reads as a clear drop.
    """
    if metric not in ("accuracy", "error"):
        raise ValueError(f"metric must be 'accuracy' or 'error' (got {metric!r})")
    fig = Figure(figsize=(10, 4), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, history in histories.items():
        xs = [h[x] for h in history]
        acc = [100 * h["test_accuracy"] for h in history]
        acc_ax.plot(xs, acc if metric == "accuracy" else [100 - a for a in acc], marker="o",
                    label=label)
        loss_ax.plot(xs, [h["test_loss"] for h in history], marker="o", label=label)
    acc_ax.set(xlabel=x, ylabel=f"test {metric} (%)", title=title or f"Test {metric} per round")
    if metric == "error":
        acc_ax.set_yscale("log")
        _plain_log_ticks(acc_ax.yaxis)
    loss_ax.set(xlabel=x, ylabel="test loss", title="Test loss per round", yscale="log")
    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
        ax.grid(alpha=0.3)
    _plain_log_ticks(loss_ax.yaxis)
    # one legend for both panels (the same runs), below them
    _legend_outside(fig, acc_ax, loc="outside lower center", ncols=min(len(histories), 4))
    return fig


def label_histograms(histograms: np.ndarray, names: Sequence[str], *,
                     title: str = "Labels held by each worker") -> Figure:
    """Grouped bars: how many samples of each digit every worker holds."""
    histograms = np.asarray(histograms)
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax = fig.subplots()
    classes = np.arange(histograms.shape[1])
    width = 0.8 / len(names)
    for i, (name, counts) in enumerate(zip(names, histograms)):
        ax.bar(classes + (i - (len(names) - 1) / 2) * width, counts, width, label=name)
    ax.set(xlabel="digit", ylabel="samples", title=title, xticks=classes)
    _legend_outside(fig, ax)
    return fig


def client_label_heatmaps(histograms: Mapping[str, np.ndarray], *, clients: int = 20) -> Figure:
    """One heatmap per split: the first ``clients`` clients (rows) by digit (columns)."""
    fig = Figure(figsize=(5 * len(histograms), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(histograms)))
    for ax, (label, hist) in zip(axes, histograms.items()):
        image = ax.imshow(np.asarray(hist)[:clients], cmap="Blues", aspect="auto")
        ax.set(xlabel="digit", ylabel="client", title=label, xticks=range(10))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(image, ax=ax, label="samples")
    return fig


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor,
                     num_classes: int = 10) -> np.ndarray:
    """(true, predicted) counts."""
    idx = labels.cpu().long() * num_classes + predictions.cpu().long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, -1).numpy()


def confusion_figure(matrix: np.ndarray, *, title: str = "Confusion matrix (test set)") -> Figure:
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.log1p(matrix), cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if i == j else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title,
           xticks=range(len(matrix)), yticks=range(len(matrix)))
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    return fig


def digit_grid(images: torch.Tensor, labels: torch.Tensor,
               predictions: torch.Tensor | None = None, *, columns: int = 8,
               title: str = "Test digits: predicted (true)") -> Figure:
    """A grid of images: normalised (N, 1, 28, 28) floats or raw (N, 28, 28) uint8.

    With ``predictions`` each title is "predicted (true)", mistakes in red;
    without, the title is the label.
    """
    images = torch.as_tensor(images)
    if images.dtype == torch.uint8:
        pixels = images.float() / 255.0
    else:
        pixels = images.squeeze(1).cpu() * MNIST_STD + MNIST_MEAN
    n = len(images)
    rows = -(-n // columns)
    fig = Figure(figsize=(columns * 1.2, rows * 1.35), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes, pixels)):
        ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1)
        label = int(labels[i])
        if predictions is None:
            ax.set_title(str(label), fontsize=9)
        else:
            pred = int(predictions[i])
            ax.set_title(f"{pred} ({label})", color="black" if pred == label else "red",
                         fontsize=9)
    fig.suptitle(title)
    return fig


def availability_figure(history: Sequence[dict], *,
                        title: str = "Who took part in each round") -> Figure:
    """Per round: eligible devices, selected, and what became of the selected ones.

    The goal is drawn over each round's stack: the server uses the first ``goal`` reports,
    and a round with fewer still counts; only a round the server skipped (fewer than
    ``min_updates`` valid updates, ``on_too_few="skip"``) is marked "skipped".
    """
    rounds = [h["round"] for h in history]
    counts = [h["availability"] for h in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    width = 0.4
    xs = np.asarray(rounds, dtype=float)
    ax.bar(xs - width / 2, [c["available"] for c in counts], width, color="#cccccc",
           label="eligible (idle, charging, unmetered)")
    bottom = np.zeros(len(counts))
    for key, color in (("completed", "#2a9d8f"), ("late", "#8ab17d"), ("stragglers", "#e9c46a"),
                       ("dropped", "#f4a261"), ("declined", "#e76f51")):
        values = np.asarray([c.get(key, 0) for c in counts], dtype=float)
        ax.bar(xs + width / 2, values, width, bottom=bottom, color=color, label=key)
        bottom += values
    ax.hlines([c["goal"] for c in counts], xs, xs + width, colors="black", linestyles="--",
              label="reporting goal (the first reports used)")
    for x, h, top in zip(xs, history, bottom):
        if h.get("skipped"):
            ax.text(x + width / 2, top, "skipped", ha="center", va="bottom", fontsize="small")
    ax.set(xlabel="round", ylabel="devices", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend_outside(fig, ax, fontsize="small")
    return fig


def personalization_figure(rows: Sequence[dict], *,
                           title: str = "Each client's held-out accuracy") -> Figure:
    """Before vs after local fine-tuning, one point per client (see-through: clients with the
    same pair of accuracies stack up darker); the same scale on both axes."""
    fig = Figure(figsize=(5, 5.4), layout="constrained")
    ax = fig.subplots()
    before = [100 * r["before"] for r in rows]
    after = [100 * r["after"] for r in rows]
    ax.scatter(before, after, s=18, alpha=0.4, label="a client")
    low = min(before + after + [100.0])
    ax.plot([low, 100], [low, 100], "k--", linewidth=1, label="no change")
    margin = max(1.0, (100 - low) / 30)
    ax.set(xlabel="global model (%)", ylabel="after personalization (%)", title=title,
           xlim=(low - margin, 100 + margin), ylim=(low - margin, 100 + margin), aspect="equal")
    ax.grid(alpha=0.3)
    _legend_outside(fig, ax, loc="outside lower center", ncols=2)
    return fig


def rounds_to_target_figure(runs: Mapping[str, Mapping], *, target: float = 0.99,
                            title: str = "Rounds to 99%: here vs McMahan et al. 2017") -> Figure:
    """Test accuracy per round for each setting, the target line, and the paper's round count.

    ``runs`` maps a setting name to a row of ``benchmarks/mcmahan_table2.py``
    (``accuracy`` per round, ``paper_rounds``). Rounds are on a log axis: the
    settings differ by an order of magnitude.
    """
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, low, panel in ((axes[0], 0, title), (axes[1], 95, "near the target")):
        for name, row in runs.items():
            rounds = np.arange(1, len(row["accuracy"]) + 1)
            line, = ax.plot(rounds, [100 * a for a in row["accuracy"]], label=name)
            ax.axvline(row["paper_rounds"], color=line.get_color(), linestyle=":", linewidth=1.5)
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1,
                   label=f"target {target:.0%} (dotted: the paper's rounds)")
        ax.set(xscale="log", xlabel="round", ylabel="test accuracy (%)", title=panel,
               ylim=(low, 100))
        ax.grid(alpha=0.3, which="both")
        _plain_log_ticks(ax.xaxis)
    _legend_outside(fig, axes[0], loc="outside lower center", ncols=len(runs) + 1)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
