"""A live training plot: a Trainer callback that redraws the loss curves while ``fit`` runs."""

from __future__ import annotations

import numbers
import time

from IPython import get_ipython
from IPython.display import display

from ..training import Callback
from .figures import new_figure
from .widgets import FigureBox


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a widget can be shown), False in scripts and the CLI."""
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class LiveMonitor(Callback):
    """Trainer callback: train loss, eval loss and eval metrics, redrawn in place during training.

    Use ``Trainer(..., callbacks=[LiveMonitor()])``. The plot redraws every ``every`` steps (at most
    once per ``min_interval`` seconds, so drawing never slows a fast run much) and after each
    evaluation. ``monitor.widget`` is the widget (shown automatically in a notebook when training
    starts); ``monitor.widget.current`` holds the plotted ``train``, ``eval`` and ``metrics`` series.
    """

    def __init__(self, every: int = 10, min_interval: float = 0.5, show: bool = True):
        self.every, self.min_interval, self.show = every, min_interval, show
        self.figure = new_figure(10, 3.5)
        self.ax_loss, self.ax_metrics = self.figure.subplots(1, 2)
        self.ax_loss.set(xlabel="step", ylabel="loss", title="loss")
        self.ax_metrics.set(xlabel="step", title="eval metrics")
        self.figure.subplots_adjust(bottom=0.17, wspace=0.25)
        self.widget = FigureBox({}, self.figure)
        self.series: dict[tuple[str, str], tuple[list, list]] = {}  # (axes, label) -> steps, values
        self.lines: dict[tuple[str, str], object] = {}
        self.last_draw = 0.0
        self.redraw()

    def add(self, axes: str, label: str, step: int, value) -> None:
        """Append one point to the line ``label`` of the loss or metrics axes."""
        value = value.item() if hasattr(value, "item") else value  # a 0-d tensor or array
        if not isinstance(value, numbers.Real):
            return
        steps, values = self.series.setdefault((axes, label), ([], []))
        steps.append(step)
        values.append(float(value))
        if (axes, label) not in self.lines:
            ax = self.ax_loss if axes == "loss" else self.ax_metrics
            (self.lines[axes, label],) = ax.plot(
                [], [], "-" if label == "train loss" else "o-", label=label
            )
            ax.legend(fontsize=8)

    def redraw(self) -> None:
        """Put the collected points into the lines, rescale the axes and re-render."""
        for key, line in self.lines.items():
            line.set_data(*self.series[key])
        for ax in (self.ax_loss, self.ax_metrics):
            ax.relim()
            ax.autoscale_view()
        self.widget.current.update(
            train=self.series.get(("loss", "train loss"), ([], [])),
            eval=self.series.get(("loss", "eval loss"), ([], [])),
            metrics={label: s for (axes, label), s in self.series.items() if axes == "metrics"},
        )
        self.widget.render(static_changed=True)
        self.last_draw = time.perf_counter()

    def on_train_begin(self, trainer) -> None:
        if self.show and in_notebook():
            display(self.widget)

    def on_step_end(self, trainer, step: int, logs: dict) -> None:
        self.add("loss", "train loss", step, logs.get("loss"))
        if step % self.every == 0 and time.perf_counter() - self.last_draw >= self.min_interval:
            self.redraw()

    def on_eval_end(self, trainer, step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            if name == "loss":
                self.add("loss", "eval loss", step, value)
            elif name != "step":
                self.add("metrics", name, step, value)
        self.redraw()

    def on_train_end(self, trainer) -> None:
        self.redraw()
