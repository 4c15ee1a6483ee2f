"""Draw the diagrams of docs/images: federated_learning.png (the data scientist, Bob, Alice and
what moves) and five_steps.png (one round in five steps, as the core notebook does it).

    python docs/images/make_diagram.py
"""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OUT = Path(__file__).with_name("federated_learning.png")
FIVE_STEPS = Path(__file__).with_name("five_steps.png")
SCIENTIST, OWNER = "#dbe9f6", "#fde9d9"  # where a step happens


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


STEPS = [  # (title, what happens, where, colour)
    ("1. Model out", "the code, as a request\n(once); the global\nweights w (every round)",
     "data scientist → owners", SCIENTIST),
    ("2. Consent", "each owner reads the\ncode (and its SHA-256)\nand approves it (once)",
     "each owner", OWNER),
    ("3. Train at the data", "the approved code trains\non the private images,\nwhich never leave",
     "each owner's Datasite", OWNER),
    ("4. Change back", "only the change Δₖ,\nthe count nₖ and the\nloss: never an image",
     "owners → data scientist", OWNER),
    ("5. Average", "w ← w + Σ nₖ Δₖ / Σ nₖ\n(FedAvg: weighted\nby examples)",
     "data scientist", SCIENTIST),
]


def draw_five_steps() -> Figure:
    fig = Figure(figsize=(12, 3.7), layout="constrained")
    ax = fig.subplots()
    ax.set(xlim=(0, 12.2), ylim=(-0.5, 3.4))
    ax.axis("off")
    width, step = 2.05, 2.4
    for i, (title, what, where, color) in enumerate(STEPS):
        x = 1.3 + i * step
        ax.add_patch(FancyBboxPatch((x - width / 2, 0.75), width, 2.0,
                                    boxstyle="round,pad=0.04", facecolor=color,
                                    edgecolor="black", linewidth=1.2))
        ax.text(x, 2.45, title, ha="center", va="center", fontsize=11.5, weight="bold")
        ax.text(x, 1.5, what, ha="center", va="center", fontsize=9.5, linespacing=1.35)
        ax.text(x, 3.1, where, ha="center", va="center", fontsize=9, style="italic",
                color="#444444")
        if i < len(STEPS) - 1:
            ax.add_patch(FancyArrowPatch((x + width / 2 + 0.06, 1.75),
                                         (x + step - width / 2 - 0.06, 1.75),
                                         arrowstyle="-|>", mutation_scale=16, linewidth=1.8))
    ax.add_patch(FancyArrowPatch((1.3 + 4 * step, 0.62), (1.3, 0.62),
                                 connectionstyle="arc3,rad=-0.06", arrowstyle="-|>",
                                 mutation_scale=16, linewidth=1.5, color="#1f5aa6"))
    ax.text(6.1, -0.28, "next round: steps 1, 3, 4 and 5 again with the new w "
            "(the consent holds for the calls approved)", ha="center", fontsize=9.5,
            color="#1f5aa6")
    fig.suptitle("One round of federated learning in five steps (blue: the data scientist; "
                 "orange: the owners)", fontsize=12.5)
    return fig


if __name__ == "__main__":
    draw().savefig(OUT, dpi=110)
    draw_five_steps().savefig(FIVE_STEPS, dpi=110)
    print(f"wrote {OUT} and {FIVE_STEPS}")
