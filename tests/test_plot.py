"""
Tests of src/plot.py, the figures of training runs: reading metrics logs (and refusing bad
ones with the file and line), the moving average, run labels, and `python src/plot.py` end to
end on small hand-made logs, with matplotlib and without it. Everything is written under tmp_path.
"""

import json
import math
import struct
import subprocess
import sys

import pytest

import plot
from conftest import ROOT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_records(num_steps, steps_per_epoch=10, peak_lr=6e-3, seed_loss=5.5):
    """A plausible run: the loss decays with a wobble, the learning rate warms up then follows a cosine."""
    records = []
    for step in range(1, num_steps + 1):
        wobble = 0.1 * math.sin(step * 1.7)
        lr = peak_lr * min(step / 10, 0.5 * (1 + math.cos(math.pi * step / num_steps)) + 0.1)
        records.append({"step": step, "epoch": (step - 1) // steps_per_epoch + 1,
                        "loss": seed_loss * math.exp(-step / 40) + 0.5 + wobble, "lr": lr,
                        "positions": step * 64 * 127, "wall_time": step * 0.05})
    return records


def write_log(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def run_command(*args):
    return subprocess.run([sys.executable, str(ROOT / "src" / "plot.py"), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def png_size(path):
    """(width, height) from the PNG's IHDR chunk, which follows the signature and its own length and type."""
    return struct.unpack(">II", path.read_bytes()[16:24])


# ---- reading logs

def test_read_metrics_returns_the_records_in_order(tmp_path):
    records = [
        {"step": 1, "epoch": 1, "loss": 5.52, "lr": 0.0006, "positions": 16256, "wall_time": 0.8},
        {"step": 2, "epoch": 1, "loss": 5.1, "lr": 0.0012, "positions": 32512, "wall_time": 1.1},
        {"step": 3, "epoch": 2, "loss": 4.75, "lr": 0.0018, "positions": 48768, "wall_time": 1.4, "extra": "kept"},
    ]
    path = tmp_path / "vanilla.pretrain.params.metrics.jsonl"
    # a blank line in the middle and the usual final newline are not records
    path.write_text(json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n" + json.dumps(records[2]) + "\n")
    assert plot.read_metrics(path) == records


GOOD_LINE = json.dumps({"step": 1, "epoch": 1, "loss": 5.5, "lr": 6e-4, "positions": 127, "wall_time": 0.1})


@pytest.mark.parametrize("content, line, words", [
    (GOOD_LINE + "\n{\"step\": 2, \"epoch\"\n", 2, "not valid JSON"),
    (GOOD_LINE + "\n" + GOOD_LINE + "\n" + GOOD_LINE.replace('"lr"', '"learning_rate"') + "\n", 3, "no 'lr'"),
    (GOOD_LINE.replace('"loss": 5.5', '"loss": "high"') + "\n", 1, "loss is 'high', not a number"),
    (GOOD_LINE + "\n[1, 2, 3]\n", 2, "expected a JSON object"),
])
def test_read_metrics_names_the_file_and_line_of_a_bad_record(tmp_path, content, line, words):
    path = tmp_path / "run.metrics.jsonl"
    path.write_text(content)
    with pytest.raises(plot.PlotError) as caught:
        plot.read_metrics(path)
    assert f"{path} line {line}:" in str(caught.value)
    assert words in str(caught.value)


@pytest.mark.parametrize("content", ["", "\n \n"])
def test_read_metrics_refuses_an_empty_log(tmp_path, content):
    path = tmp_path / "run.metrics.jsonl"
    path.write_text(content)
    with pytest.raises(plot.PlotError, match="empty"):
        plot.read_metrics(path)


def test_read_metrics_refuses_a_missing_file(tmp_path):
    path = tmp_path / "nowhere.metrics.jsonl"
    with pytest.raises(plot.PlotError) as caught:
        plot.read_metrics(path)
    assert str(path) in str(caught.value) and "No such file" in str(caught.value)


@pytest.mark.parametrize("content", [None, "", GOOD_LINE + "\nnot json\n"])
def test_command_reports_a_bad_log_in_one_line_with_status_2(tmp_path, content):
    path = tmp_path / "run.metrics.jsonl"
    if content is not None:
        path.write_text(content)
    result = run_command(path, "--out_dir", tmp_path / "figures")
    assert result.returncode == 2
    assert result.stderr.startswith(f"plot.py: {path}")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "figures").exists()


# ---- labels, smoothing, x axes

@pytest.mark.parametrize("path, label", [
    ("vanilla.pretrain.params.metrics.jsonl", "vanilla.pretrain"),
    ("runs/synthesizer.finetune.params.metrics.jsonl", "synthesizer.finetune"),
    ("/tmp/x/vanilla.nopretrain.metrics.jsonl", "vanilla.nopretrain"),
    ("my_run.jsonl", "my_run"),
])
def test_run_label(path, label):
    assert plot.run_label(path) == label


def test_run_labels_keep_the_folder_only_where_names_clash():
    assert plot.run_labels(["a/v.params.metrics.jsonl", "b/s.params.metrics.jsonl"]) == ["v", "s"]
    assert plot.run_labels(["seed0/v.params.metrics.jsonl", "seed1/v.params.metrics.jsonl"]) == \
        ["seed0/v", "seed1/v"]


def test_moving_average_is_the_mean_of_the_last_window_values():
    values = [math.sin(i) * 3 + i / 7 for i in range(57)]
    for window in (1, 2, 5, 56, 57, 100):
        # directly from the definition: each point averages itself and up to window-1 values before it
        expected = [sum(values[max(0, i - window + 1):i + 1]) / (i + 1 - max(0, i - window + 1))
                    for i in range(len(values))]
        assert plot.moving_average(values, window) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_moving_average_small_cases_and_bad_windows():
    assert plot.moving_average([2, 4, 6, 8], 2) == [2, 3, 5, 7]
    assert plot.moving_average([2, 4, 6, 8], 1) == [2, 4, 6, 8]
    assert plot.moving_average([], 3) == []
    for window in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="window"):
            plot.moving_average([1, 2], window)


def test_epochs_done_spreads_the_steps_of_each_epoch():
    records = [{"epoch": epoch} for epoch in (1, 1, 1, 1, 2, 2, 2, 2, 3)]  # epoch 3 is still training
    assert plot.epochs_done(records) == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25]


@pytest.mark.parametrize("prefix, name", [("", "loss.png"), ("pretrain", "pretrain.loss.png"),
                                          ("pretrain_", "pretrain_loss.png"), ("a.", "a.loss.png")])
def test_figure_path(prefix, name):
    assert plot.figure_path("figs", prefix, "loss") == plot.Path("figs") / name


@pytest.mark.parametrize("value, label", [(0.1, "0.1"), (0.2, "0.2"), (0.30000000000000004, "0.3"), (0.4, ""),
                                          (0.5, "0.5"), (0.7, ""), (1.0, "1"), (3.0, "3"), (6.0, ""), (20.0, "20")])
def test_log_tick_labels_are_plain_numbers_at_1_2_3_5(value, label):
    assert plot.log_tick_label(value) == label


# ---- figures

def assert_is_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert 10_000 < len(data) < 5_000_000  # a real chart, not a blank or broken file
    width, height = png_size(path)
    assert (width, height) == (1080, 600)  # 9 x 5 inches at 120 dpi


def test_command_draws_two_runs_into_two_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    vanilla = write_log(tmp_path / "vanilla.pretrain.params.metrics.jsonl", make_records(120))
    synthesizer = write_log(tmp_path / "synthesizer.pretrain.params.metrics.jsonl",
                            make_records(90, seed_loss=4.0))
    out_dir = tmp_path / "figures"
    result = run_command(vanilla, synthesizer, "--out_dir", out_dir, "--prefix", "pretrain", "--smooth", "5")
    assert result.returncode == 0, result.stderr
    written = [out_dir / "pretrain.loss.png", out_dir / "pretrain.learning_rate.png"]
    assert result.stdout.splitlines() == [str(path) for path in written]
    for path in written:
        assert_is_png(path)


@pytest.mark.parametrize("x", list(plot.X_AXIS_LABELS))
def test_every_x_axis_draws(tmp_path, x):
    pytest.importorskip("matplotlib")
    runs = [("a", make_records(60)), ("b", make_records(3))]  # b is too short to smooth
    plot.plot_loss(runs, tmp_path / "loss.png", x)
    plot.plot_learning_rate(runs, tmp_path / "lr.png", x)
    assert_is_png(tmp_path / "loss.png")
    assert_is_png(tmp_path / "lr.png")


def test_without_matplotlib_the_command_says_so_and_exits_2(tmp_path, monkeypatch, capsys):
    log = write_log(tmp_path / "vanilla.finetune.params.metrics.jsonl", make_records(20))
    # None in sys.modules makes an import fail as if the package were not installed
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SystemExit) as caught:
        plot.main([str(log), "--out_dir", str(tmp_path / "figures")])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "matplotlib is needed for plots" in err and "works without it" in err and "pip install matplotlib" in err
    assert not (tmp_path / "figures").exists()


def test_reading_and_smoothing_need_no_matplotlib(tmp_path):
    log = write_log(tmp_path / "run.metrics.jsonl", make_records(8))
    code = ("import sys; sys.modules['matplotlib'] = None; sys.path.insert(0, 'src'); import plot; "
            f"records = plot.read_metrics({str(log)!r}); "
            "print(len(records), plot.moving_average([r['step'] for r in records], 2)[-1])")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["8", "7.5"]
