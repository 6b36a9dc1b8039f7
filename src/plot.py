"""
Figures of training runs. Pretraining and finetuning log one JSON object per optimizer step
beside their params, in <writing_params_path>.metrics.jsonl; this draws one or more of those
logs as PNG charts, the runs side by side:

    python src/plot.py vanilla.pretrain.params.metrics.jsonl synthesizer.pretrain.params.metrics.jsonl \
        --out_dir figures --prefix pretrain

writes figures/pretrain.loss.png (each run's loss, every step faint and a moving average solid)
and figures/pretrain.learning_rate.png (each run's learning-rate schedule). matplotlib is
needed only to draw, so it is imported only there: reading and smoothing logs work without it.
"""

import json
import math
import sys
from collections import Counter
from pathlib import Path

from safe_io import ArgumentParser, InputError, check_outputs, in_range

METRIC_KEYS = ("step", "epoch", "loss", "lr", "positions", "wall_time")
X_AXIS_LABELS = {  # the --x choices, and how the x axis reads for each
    "step": "optimizer step",
    "epoch": "epoch",
    "positions": "target positions seen (PAD included)",
    "wall_time": "wall time since training started (s)",
}
MATPLOTLIB_MISSING = ("matplotlib is needed for plots but could not be imported ({error}); the rest of the "
                      "codebase works without it. Install it with: pip install matplotlib")


class PlotError(Exception):
    """A problem told in one line: the command prints it and exits with status 2."""


def read_metrics(path):
    """The records of one metrics log, in file order (blank lines are skipped)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as error:
        raise PlotError(f"{path}: cannot read this metrics log ({error.strerror}); training writes it beside "
                        "the params, as <writing_params_path>.metrics.jsonl") from None
    except UnicodeDecodeError as error:
        raise PlotError(f"{path}: not a metrics log, it is not UTF-8 text ({error.reason} at byte "
                        f"{error.start})") from None
    records = [parse_record(line, f"{path} line {number}")
               for number, line in enumerate(lines, start=1) if line.strip()]
    if not records:
        raise PlotError(f"{path}: the metrics log is empty: the run has not finished a training step yet")
    return records


def parse_record(line, where):
    """One log line as a dict, checked to hold every metric as a number; `where` names file and line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise PlotError(f"{where}: not valid JSON ({error.msg} at column {error.colno}); "
                        "each line of a metrics log is one JSON object") from None
    if not isinstance(record, dict):
        raise PlotError(f"{where}: expected a JSON object, found a {type(record).__name__}")
    for key in METRIC_KEYS:
        if key not in record:
            raise PlotError(f"{where}: the record has no {key!r}; each record needs {', '.join(METRIC_KEYS)}")
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PlotError(f"{where}: {key} is {value!r}, not a number")
    return record


def run_label(path):
    """A run's legend name: its log's file name less .metrics.jsonl and .params."""
    name = Path(path).name
    for suffix in (".jsonl", ".metrics", ".params"):
        name = name.removesuffix(suffix)
    return name


def run_labels(paths):
    """run_label of each log; where two would be the same, every label keeps its folder."""
    labels = [run_label(path) for path in paths]
    if len(set(labels)) == len(labels):
        return labels
    return [str(Path(path).parent / label) for path, label in zip(paths, labels)]


def moving_average(values, window):
    """The mean of the last `window` values at each point; the first points average what came before."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"moving_average: window must be a positive whole number of steps, got {window!r}")
    values = list(values)
    averages, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        averages.append(total / min(i + 1, window))
    return averages


def default_window(num_steps):
    # a fiftieth of the run smooths the noise of a batch while keeping the shape of the curve;
    # short runs (a few epochs of finetuning) are drawn as they are
    return max(1, num_steps // 50)


def epochs_done(records):
    """Each step as epochs done (the last step of epoch 1 is 1.0), so that --x epoch draws a curve,
    not a column of points per epoch. Every epoch takes as many steps as the fullest one logged:
    that keeps the last epoch of a run still training in its place."""
    steps_per_epoch = max(Counter(record["epoch"] for record in records).values())
    done, seen = [], Counter()
    for record in records:
        seen[record["epoch"]] += 1
        done.append(record["epoch"] - 1 + seen[record["epoch"]] / steps_per_epoch)
    return done


def x_values(records, x):
    return epochs_done(records) if x == "epoch" else [record[x] for record in records]


def new_chart(title, x, y_label):
    """An empty figure and its axes, drawn by the non-interactive Agg backend (no display needed)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlotError(MATPLOTLIB_MISSING.format(error=error)) from None
    figure = Figure(figsize=(9, 5), layout="constrained")
    FigureCanvasAgg(figure)  # a Figure made without pyplot has no canvas until given one
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel(X_AXIS_LABELS[x])
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    return figure, axes


def save(figure, path):
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise PlotError(f"{path}: cannot write the figure ({error.strerror}); choose another --out_dir") from None


def plot_loss(runs, path, x="step", smooth=None):
    """Chart the loss of runs, a list of (label, records): every step faint, a moving average of
    `smooth` steps solid (default: default_window of each run)."""
    figure, axes = new_chart("Training loss (faint: every step)", x, "loss (cross-entropy, log scale)")
    for i, (label, records) in enumerate(runs):
        color = f"C{i % 10}"  # the same run gets the same color in every chart
        xs, losses = x_values(records, x), [record["loss"] for record in records]
        window = min(smooth or default_window(len(losses)), len(losses))
        if window == 1:
            axes.plot(xs, losses, color=color, linewidth=1.2, label=label)
            continue
        axes.plot(xs, losses, color=color, linewidth=0.8, alpha=0.25)
        axes.plot(xs, moving_average(losses, window), color=color, linewidth=1.6,
                  label=f"{label} (mean of the last {window} steps)")
    if all(record["loss"] > 0 for _, records in runs for record in records):
        use_log_scale(axes)  # a character-level loss falls from ln 256 ~ 5.5 to well under 1
    else:
        axes.set_ylabel("loss (cross-entropy)")
    axes.legend(loc="best")
    save(figure, path)


def use_log_scale(axes):
    """A log y axis labelled by log_tick_label, on its decades and between them."""
    from matplotlib.ticker import FuncFormatter

    axes.set_yscale("log")
    for set_formatter in (axes.yaxis.set_major_formatter, axes.yaxis.set_minor_formatter):
        set_formatter(FuncFormatter(log_tick_label))


def log_tick_label(value, position=None):
    """Plain numbers at 1, 2, 3 and 5 times a power of ten: 0.5, 1, 2, 3, not 5e-01 or 3 x 10^0;
    leaving out 4 and 6 to 9 keeps the labels of a log axis over several decades apart."""
    leading = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(leading) in (1, 2, 3, 5) else ""


def plot_learning_rate(runs, path, x="step"):
    """Chart the learning rate each step of runs, a list of (label, records), used."""
    figure, axes = new_chart("Learning-rate schedule", x, "learning rate")
    line_styles = ["-", "--", ":", "-."]  # runs often share a schedule: dashes keep each one visible
    for i, (label, records) in enumerate(runs):
        axes.plot(x_values(records, x), [record["lr"] for record in records], color=f"C{i % 10}",
                  linestyle=line_styles[i % len(line_styles)], linewidth=1.6, label=label)
    axes.set_ylim(bottom=0)
    axes.legend(loc="best")
    save(figure, path)


def figure_path(out_dir, prefix, name):
    """out_dir/<prefix><name>.png, with a "." after a prefix that does not already end in . _ or -."""
    if prefix and prefix[-1] not in "._-":
        prefix += "."
    return Path(out_dir) / f"{prefix}{name}.png"


def parse_args(argv=None):
    parser = ArgumentParser(description="Draw the loss and learning rate of training runs as PNG files.")
    parser.add_argument("logs", nargs="+", metavar="METRICS_LOG",
                        help="a <writing_params_path>.metrics.jsonl written by pretrain or finetune")
    parser.add_argument("--out_dir", default="figures", help="folder for the PNG files (default: figures)")
    parser.add_argument("--prefix", default="", help="start of the file names, e.g. pretrain (default: none)")
    parser.add_argument("--x", default="step", choices=list(X_AXIS_LABELS), help="the x axis (default: step)")
    parser.add_argument("--smooth", type=in_range(int, 1),
                        help="moving-average window of the loss, in steps (default: a fiftieth of each run)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    loss_path = figure_path(args.out_dir, args.prefix, "loss")
    learning_rate_path = figure_path(args.out_dir, args.prefix, "learning_rate")
    try:
        check_outputs([("figure", loss_path), ("figure", learning_rate_path)],
                      [("the metrics log", path) for path in args.logs])
        runs = list(zip(run_labels(args.logs), [read_metrics(path) for path in args.logs]))
        plot_loss(runs, loss_path, args.x, args.smooth)
        plot_learning_rate(runs, learning_rate_path, args.x)
    except (PlotError, InputError) as error:
        print(f"plot.py: {error}", file=sys.stderr)
        sys.exit(2)
    print(loss_path)
    print(learning_rate_path)


if __name__ == "__main__":
    main()
