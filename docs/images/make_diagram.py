"""Draw docs/images/federated_learning.png: the data scientist, Bob, Alice and what moves.

    python docs/images/make_diagram.py
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).with_name("federated_learning.png")


def box(ax, x, y, w, h, text, color):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                                facecolor=color, edgecolor="black", linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=10.5, wrap=True)


def arrow(ax, start, end, text, color, offset):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16, color=color,
                                 linewidth=2))
    mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
    ax.text(mx, my, text, ha="center", va="center", fontsize=9, color=color)


def draw() -> Figure:
    fig = Figure(figsize=(9, 5.2), layout="constrained")
    ax = fig.subplots()
    ax.set(xlim=(0, 10), ylim=(0, 6.2))
    ax.axis("off")
    box(ax, 5, 5.2, 4.2, 1.1, "Data scientist (server)\nglobal model  w  —  FedAvg:\n"
        "w ← w + Σ nᵢ Δᵢ / Σ nᵢ", "#dbe9f6")
    for x, name in ((2, "Bob"), (8, "Alice")):
        box(ax, x, 1.5, 3.5, 1.7, f"{name}'s Datasite\n30,000 private images\n"
            "(the data scientist sees only a mock)", "#fde9d9")
        down_start, down_end = (5 - 0.9 if x < 5 else 5 + 0.9, 4.6), (x, 2.4)
        arrow(ax, down_start, down_end, "global weights w\n+ approved code", "#1f5aa6",
              (-0.95 if x < 5 else 0.95, 0.15))
        up_start, up_end = (x + (0.5 if x < 5 else -0.5), 2.4), (5 - 0.3 if x < 5 else 5 + 0.3, 4.6)
        arrow(ax, up_start, up_end, "update Δ, n\n(weights only)", "#b3261e",
              (0.75 if x < 5 else -0.75, -0.35))
    ax.text(5, 0.2, "Raw images and labels never leave Bob's and Alice's machines; "
            "the model goes to the data.", ha="center", fontsize=9.5, style="italic")
    fig.suptitle("Federated learning with two data owners", fontsize=13)
    return fig


if __name__ == "__main__":
    draw().savefig(OUT, dpi=110)
    print(f"wrote {OUT}")
