"""Attention heatmaps: one figure for the W&B images of training and ``translate --plot-attention``.

Needs matplotlib (the optional ``plot`` extra). No pyplot: no global state, no display.
"""

from __future__ import annotations


def attention_figure(source: list[str], output: list[str], weights: list[list[float]]):
    """A heatmap of ``weights`` (rows: output tokens, columns: source tokens) as a Figure."""
    from matplotlib.figure import Figure

    rows, columns = len(output), len(source)
    figure = Figure(figsize=(max(4, 0.45 * columns + 1.5), max(3, 0.4 * rows + 1.5)))
    axes = figure.add_subplot()
    axes.imshow(weights or [[0.0]], cmap="Greys", vmin=0, vmax=1, aspect="auto")
    axes.set_xticks(range(columns), source, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(rows), output, fontsize=8)
    axes.set_xlabel("source")
    axes.set_ylabel("output")
    figure.tight_layout()
    return figure


def curves_figure(runs: dict[str, list[dict]]):
    """Validation BLEU and loss against minutes and steps, one line per run (``history``
    entries: step, minutes, bleu, loss), as a 2 x 2 Figure."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7))
    panels = figure.subplots(2, 2, squeeze=False)
    for row, (metric, label) in enumerate(
        (("bleu", "validation BLEU"), ("loss", "validation loss"))
    ):
        for column, (axis, unit) in enumerate((("minutes", "minutes"), ("step", "steps"))):
            panel = panels[row][column]
            for name, history in runs.items():
                points = [(entry[axis], entry[metric]) for entry in history]
                if points:
                    xs, ys = zip(*points, strict=True)
                    panel.plot(xs, ys, marker=".", label=name)
            panel.set_xlabel(unit)
            panel.set_ylabel(label)
            panel.grid(alpha=0.3)
    panels[0][0].legend(fontsize=8)
    figure.tight_layout()
    return figure
