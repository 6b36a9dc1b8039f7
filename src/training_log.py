"""
What a training run records of its steps: each step's loss, read from the device a few steps
at a time and checked to be finite, the metrics file, and the progress bar.
"""

import json
import math
import time

from tqdm import tqdm

from safe_io import atomic_output

# Reading a loss makes the host wait for the device to finish every step queued before it, so
# the log reads the losses of this many steps at once, and at each epoch's end: the progress
# bar, the metrics file and the check for a loss that is not finite lag by as many steps.
LOSS_READ_STEPS = 20


class LossNotFinite(Exception):
    """A step's loss was read as NaN or infinite; the message says which step."""


class TrainingLog:
    """
    The metrics of a run, one record per step: step, epoch, loss, lr (the rate the step used),
    positions (target positions seen after it, PAD included) and wall_time (seconds since the
    run started, a resumed run's included). Only the main process writes and shows them.
    """

    def __init__(self, read, optimizer, metrics, positions, total_steps, steps_done, metrics_path, main_process):
        self.read = read  # device losses to floats, in one transfer (Trainer.read)
        self.optimizer = optimizer  # whose learning rate the progress bar shows
        self.metrics = metrics  # the records so far: a resumed run's come from its checkpoint
        self.metrics_path = metrics_path if main_process else None
        self.unread = []  # the steps whose losses are still on the device
        self.clock = time.time() - (metrics[-1]["wall_time"] if metrics else 0.0)
        self.last_read = (time.time(), positions)  # for the positions per second shown
        self.progress = tqdm(total=total_steps, initial=steps_done, dynamic_ncols=True, disable=not main_process)

    def step(self, epoch, step, loss, lr, positions):
        """A step queued: its loss (on the device), the rate it used, the positions seen after it."""
        # a step's wall time is when it was queued; read_losses gives the last one read when it finished
        self.unread.append({"epoch": epoch, "step": step, "loss": loss, "lr": lr, "positions": positions,
                            "wall_time": time.time() - self.clock})
        if len(self.unread) == LOSS_READ_STEPS:
            self.read_losses()
        self.progress.update()

    def read_losses(self):
        """Record the unread steps, show the last on the progress bar; LossNotFinite at one that is not finite."""
        if not self.unread:
            return
        losses = self.read(record["loss"] for record in self.unread)
        self.unread[-1]["wall_time"] = time.time() - self.clock
        for record, loss in zip(self.unread, losses):
            if not math.isfinite(loss):
                raise LossNotFinite(f"the loss became {loss} at epoch {record['epoch']}, step {record['step']}")
            self.metrics.append({"step": len(self.metrics) + 1, "epoch": record["epoch"], "loss": loss,
                                 "lr": record["lr"], "positions": record["positions"],
                                 "wall_time": record["wall_time"]})
        self.progress.set_description(f"epoch {record['epoch']} iter {record['step']}: train loss {loss:.5f}. "
                                      f"lr {self.optimizer.param_groups[0]['lr']:e}", refresh=False)
        now = (time.time(), record["positions"])
        self.progress.set_postfix_str(f"{(now[1] - self.last_read[1]) / max(now[0] - self.last_read[0], 1e-6):.0f} "
                                      f"pos/s", refresh=False)
        self.last_read = now
        self.unread.clear()

    def write(self, line):
        """A line printed above the progress bar."""
        self.progress.write(line)

    def write_metrics(self, steps=None):
        """The metrics file: the first `steps` records (every one by default)."""
        if self.metrics_path is not None:
            with atomic_output(self.metrics_path) as f:
                f.writelines(json.dumps(record) + "\n" for record in self.metrics[:steps])

    def close(self):
        self.progress.close()
