"""
The training loop: AdamW with the original's weight-decay groups, gradient clipping, and
a learning rate that warms up linearly and then follows a cosine, counted in tokens.

It walks the training set in order, as the original did. What makes it faster leaves the
function alone: the project's datasets build each batch with tensor code on the training
device (dataset.py), and tell the host each row's length; a batch's rows run in groups of
similar length, each group cut after its last non-PAD target, so the padding that is about
half of every batch costs nothing (see Trainer.loss); the matrix work runs in bf16 under
autocast on CUDA (and on a CPU where it pays: big steps, fast bf16 products), weights and
optimizer state staying in fp32; on CUDA AdamW is the fused kernel (device.py has what each
kind of device does); the losses stay on the device and are read a few steps at a time
(training_log.py), so that on a GPU the host queues steps without waiting for them;
torch.compile is there for long runs. Under torchrun it trains data-parallel over the same
global batches (see distributed.py).
"""

import functools
import math
import signal
import time
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

import checkpoint
import distributed
from dataset import row_lengths
from device import CPU, kind_of, resolve_device
from params import save_params
from safe_io import InputError
from training_log import LossNotFinite, TrainingLog

# auto trains in bf16 on a CPU when both hold, so that the same command chooses alike every
# time (BENCHMARKS.md, issue 17): the step is big, batch rows x n_embd at least half the
# handout's pretraining (128 x 256), since at the CPU recipe's 8 x 128 a bf16 step ran 1.7
# times slower and small steps timed alone straddle any threshold; and bf16 matrix products
# of the MLP's widths run at least BF16_PRODUCT_WORTH times as fast as fp32's (2.1 on one
# thread of a Zen 4, busy or quiet; on two threads, 4.4 to 4.6 on a Zen 5, 2.3 to 3.0 on a
# Zen 4, 0.5 to 0.6 on the Intel machine measured: far from it)
BF16_MIN_WORK = 128 * 256 // 2
BF16_PRODUCT_WORTH = 1.5
PRECISIONS = ("auto", "fp32", "bf16")  # what --precision takes, in every command that trains


class TrainerConfig:
    max_epochs = 10
    batch_size = 64
    learning_rate = 3e-4
    betas = (0.9, 0.95)
    grad_norm_clip = 1.0
    weight_decay = 0.1  # only applied on matmul weights
    lr_decay = False
    warmup_tokens = 375e6
    final_tokens = 260e9
    ckpt_path = None
    num_workers = 0
    # How a batch's rows run (see Trainer.loss): "grouped" in groups of similar length, each cut
    # after its longest row; "trimmed" all in one group cut after the longest row; "padded" all
    # at every position, as the original computed. The same loss and gradients either way.
    batch_rows = "grouped"
    data_loader = False  # True: a DataLoader builds each batch one example at a time in num_workers processes,
                         # as the original did, instead of the dataset's batches() (see epoch_batches)
    device = "auto"     # auto: CUDA when present, else MPS when present, else CPU
    precision = "auto"  # auto: bf16 autocast on CUDA, and on a CPU where it pays (choose_precision); or fp32, bf16
    compile = False     # torch.compile the model for training: pays on long runs (see BENCHMARKS.md)
    metrics_path = None     # JSON lines, one per step: step, epoch, loss, lr, positions, wall_time
    checkpoint_path = None  # where the resumable state goes (see checkpoint.py)
    checkpoint_every = 120  # seconds between checkpoint writes, at the end of an epoch
    resume = False          # continue from checkpoint_path
    snapshots = {}          # {epoch: path}: the params as they are after those epochs, written as params files

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)


def choose_precision(precision, device_kind, work=0):
    """
    (name, why) of the precision training computes in: "fp32", or "bf16" autocast (the matrix
    work in bf16, weights and optimizer state in fp32). auto takes the device kind's choice
    (device.py): bf16 on CUDA, fp32 on MPS; on a CPU bf16 only for a step of work (batch rows x
    n_embd) of at least BF16_MIN_WORK, on a CPU whose bf16 products are fast (see BF16_MIN_WORK).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")
    if precision != "auto":
        return precision, "as asked"
    if device_kind.auto_precision != "measured":
        return device_kind.auto_precision, f"auto: {device_kind.label}"
    if work < BF16_MIN_WORK:
        return "fp32", f"auto: a CPU, and a step too small for bf16 to pay (batch x n_embd {work} < {BF16_MIN_WORK})"
    speedup = cpu_bf16_product_speedup()
    if speedup < BF16_PRODUCT_WORTH:
        return "fp32", f"auto: bf16 matrix products run {speedup:.1f}x as fast as fp32 on this CPU"
    return "bf16", f"auto: bf16 matrix products run {speedup:.1f}x as fast as fp32 on this CPU, and the step is big"


@functools.cache
def cpu_bf16_product_speedup(repeats=30):
    """
    How many times as fast a (512 x 256) @ (256 x 1024) product, of the MLP's widths, runs in
    bf16 as in fp32 on this CPU, measured once per process (some 0.15 s): on one thread, fp32
    and bf16 in turn, the best of repeats each. Other processes on the cores only add time to
    a product, so the best of many short ones, taken in turn, is what the CPU does when they
    let it: measured on two threads, all of fp32's before bf16's, a Zen 4 busy with two other
    trainings read 1.4x to 5.1x, which this way read 2.1x to 2.2x, as when quiet.
    """
    operands = {dtype: (torch.ones(512, 256, dtype=dtype), torch.ones(256, 1024, dtype=dtype))
                for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(operands, math.inf)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no product waits for another core that is busy
    try:
        for _ in range(repeats):
            for dtype, (a, b) in operands.items():
                started = time.perf_counter()
                a @ b
                best[dtype] = min(best[dtype], time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return best[torch.float32] / best[torch.bfloat16]


def learning_rate_at(tokens, config):
    """The original schedule. Past final_tokens the cosine rises again: kept, it is faithful."""
    if not config.lr_decay:
        return config.learning_rate
    if tokens < config.warmup_tokens:
        mult = tokens / max(1, config.warmup_tokens)
    else:
        progress = (tokens - config.warmup_tokens) / max(1, config.final_tokens - config.warmup_tokens)
        mult = max(0.1, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return config.learning_rate * mult


def parameter_groups(model, weight_decay):
    # The original decays every parameter whose name contains neither "bias" nor
    # "LayerNorm.weight"; here LayerNorms are named ln1/ln2/ln_f, so their weights and
    # pos_emb are decayed too. That is what produced the reference params, so it stays.
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if "bias" in name or "LayerNorm.weight" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


BATCH_ROWS = ("grouped", "trimmed", "padded")


def row_groups(batch_rows, lengths, width, group_cost):
    """
    The groups a batch's rows run in, as (rows, length), the way batch_rows says (see
    TrainerConfig); width is the batch's number of positions, at which "padded" runs every row.
    """
    if not lengths:
        return []
    if batch_rows == "grouped":
        return length_groups(lengths, group_cost)
    return [(torch.arange(len(lengths)), max(lengths) if batch_rows == "trimmed" else width)]


def length_groups(lengths, group_cost):
    """
    Split a batch's rows into groups, each to run cut to its longest row: a list of (rows,
    length). The split minimises the positions computed plus group_cost for each group, exactly.
    """
    if not lengths:
        return []
    if one_group_is_cheapest(lengths, group_cost):
        return [(torch.arange(len(lengths)), max(lengths))]
    return cheapest_groups(lengths, group_cost)


def one_group_is_cheapest(lengths, group_cost):
    """
    Whether no split can beat one group, by a bound that costs nothing beside the search: k >= 2
    groups cost at least sum(lengths) + 2 group_cost, one group n * longest + group_cost. With
    the GPU's cost, 128 x 127, it holds for every batch of at most 128 rows of at most 127
    positions (n * longest - sum(lengths) <= (n - 1) * longest <= 127 x 127), so there the
    search, which would take longer than the step, never runs.
    """
    return group_cost >= len(lengths) * max(lengths) - sum(lengths)


def cheapest_groups(lengths, group_cost):
    """length_groups' search: dynamic programming over the rows sorted longest first (a group is a run of them)."""
    n = len(lengths)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    longest = np.asarray(lengths)[order]  # longest[i]: the length of a group that starts at row i
    best = np.zeros(n + 1)        # best[j]: least cost of grouping the first j rows
    start = np.zeros(n + 1, int)  # where the last group of that grouping starts
    for j in range(1, n + 1):
        costs = best[:j] + (j - np.arange(j)) * longest[:j] + group_cost
        start[j] = costs.argmin()
        best[j] = costs[start[j]]
    groups, j = [], n
    while j > 0:
        i = start[j]
        groups.append((torch.from_numpy(order[i:j].copy()), int(longest[i])))
        j = i
    return groups[::-1]


class Trainer:

    def __init__(self, model, train_dataset, test_dataset, config):
        self.model = model
        self.train_dataset = train_dataset
        self.test_dataset = test_dataset
        self.config = config
        self.device = resolve_device(config.device)
        self.device_kind = kind_of(self.device)
        if config.compile and not self.device_kind.compile_allowed:
            raise InputError(f"--compile: torch.compile is not used on {self.device_kind.label} here; "
                             f"run without --compile")
        self.rank, self.world_size = distributed.world()
        if config.batch_rows not in BATCH_ROWS:
            raise ValueError(f"unknown batch_rows {config.batch_rows!r}; choose one of {', '.join(BATCH_ROWS)}")
        self.group_cost = self.device_kind.group_cost
        self.tokens = 0  # target positions seen, PAD included: drives the learning rate
        self.model.to(self.device)
        # the data's random draws get a generator of their own, so a checkpoint can restore it
        self.data_generator = torch.Generator().manual_seed(int(torch.randint(2 ** 62, ())))
        distributed.own_random_stream()  # under torchrun: each process's dropout masks its own
        self.wrapped_model = model  # what the steps call: the model, within DDP and torch.compile when used
        if self.world_size > 1:
            self.wrapped_model = DistributedDataParallel(
                model, device_ids=None if self.device_kind is CPU else [self.device])
        if config.compile:
            self.wrapped_model = torch.compile(self.wrapped_model, dynamic=True)
        work = config.batch_size * model.tok_emb.embedding_dim  # what decides whether bf16 can pay on a CPU
        self.set_precision(*choose_precision(config.precision, self.device_kind, work))

    def set_precision(self, precision, why):
        self.precision, self.precision_reason = precision, why
        self.dtype = torch.bfloat16 if precision == "bf16" else None

    def epoch_batches(self, dataset, generator):
        """
        One epoch of (x, y, each row's length up to its last target, on the host). The project's
        datasets make them with tensor code, on the device where its kind allows (dataset.py);
        any other Dataset, or any with config.data_loader, goes through a DataLoader, whose
        batches are on the host, where their lengths cost nothing to find. Batches made
        elsewhere move to the device in loss().
        """
        if hasattr(dataset, "batches") and not self.config.data_loader:
            where = self.device if self.device_kind.batches_on_device else "cpu"
            return dataset.batches(self.config.batch_size, generator, where)
        loader = DataLoader(dataset, batch_size=self.config.batch_size, shuffle=False,
                            num_workers=self.config.num_workers, pin_memory=self.device_kind.pin_memory,
                            generator=generator)
        return ((x, y, row_lengths(y)) for x, y in loader)

    def loss(self, x, y, lengths, backward=False):
        """
        The mean cross-entropy over the batch's non-PAD targets (under DDP, this process's share
        of it, so that the gradients DDP averages are those of the whole batch). With backward,
        also adds its gradients to the parameters' .grad.

        Rows run in groups of similar length (by default; config.batch_rows), each cut after its
        longest row's last non-PAD target: attention is causal and a PAD target carries no loss,
        so positions after a row's last target change nothing, and about half of a batch is such
        padding. The loss is a sum over targets, so summing the groups' sums gives the same loss
        and gradients. Each group's backward runs at once, freeing its activations; DDP exchanges
        gradients after the last. The lengths (row_lengths(y), on the host) decide the cuts, so
        nothing here waits for the device; the loss stays there.
        """
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.world_size > 1:
            x, y, lengths, scale = distributed.share_of_batch(x, y, lengths)
        else:
            scale = 1 / (y != 0).sum().clamp(min=1)
        # a process whose share is empty still runs one (empty) group, so that DDP sees its backward
        groups = row_groups(self.config.batch_rows, lengths.tolist(), y.size(1), self.group_cost) or \
            [(torch.arange(0), 1)]
        total = 0.0
        for number, (rows, length) in enumerate(groups, start=1):
            # a group of every row is the batch itself (the loss is a sum: order does not matter)
            if len(rows) == len(x):
                xs, ys = x, y
            else:
                rows = rows.to(self.device)
                xs, ys = x[rows], y[rows]
            # DDP decides in the forward whether the backward after it exchanges gradients
            exchange = not backward or number == len(groups) or self.world_size == 1
            with nullcontext() if exchange else self.wrapped_model.no_sync():
                with torch.autocast(self.device_kind.name, dtype=self.dtype, enabled=self.dtype is not None):
                    logits, _ = self.wrapped_model(xs[:, :length])
                loss = F.cross_entropy(logits.flatten(0, 1).float(), ys[:, :length].flatten(), ignore_index=0,
                                       reduction="sum") * scale
                if backward:
                    loss.backward()
            total += loss.detach()
        return total

    def optimizer(self):
        return torch.optim.AdamW(parameter_groups(self.model, self.config.weight_decay),
                                 lr=self.config.learning_rate, betas=self.config.betas,
                                 fused=self.device_kind.fused_adamw)

    def step(self, optimizer, x, y, lengths):
        """One update on the batch (x, y); returns its loss (on the device) and the learning rate it used."""
        lr_used = optimizer.param_groups[0]["lr"]
        self.model.zero_grad(set_to_none=True)
        loss = self.loss(x, y, lengths, backward=True)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_norm_clip)
        optimizer.step()
        self.tokens += y.numel()
        lr = learning_rate_at(self.tokens, self.config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return loss, lr_used

    def train(self, stop=None):
        """
        Train for config.max_epochs; returns the metrics (training_log.py). Raises TrainingStopped
        when interrupted or diverged. stop: a StopSignals the caller is in, to go on holding the
        signals after the loop (run.py).
        """
        model, config = self.model, self.config
        optimizer = self.optimizer()
        metrics, start_epoch = self.resume(optimizer) if config.resume else ([], 0)
        resume_point = self.capture_resume_point(optimizer, start_epoch, metrics)
        if self.rank == 0:
            print(f"precision: {self.precision} ({self.precision_reason})", flush=True)
        steps_per_epoch = math.ceil(len(self.train_dataset) / config.batch_size)
        log = TrainingLog(self.read, optimizer, metrics, self.tokens, config.max_epochs * steps_per_epoch,
                          start_epoch * steps_per_epoch, config.metrics_path, main_process=self.rank == 0)
        last_write = time.time()
        with nullcontext(stop) if stop is not None else StopSignals() as stop:
            try:
                for epoch in range(start_epoch, config.max_epochs):
                    model.train()
                    for step, (x, y, lengths) in enumerate(self.epoch_batches(self.train_dataset, self.data_generator)):
                        loss, lr = self.step(optimizer, x, y, lengths)
                        log.step(epoch + 1, step, loss, lr, self.tokens)
                        signum = distributed.agreed_signal(stop.requested[0] if stop.requested else 0)
                        if signum:
                            raise self.stopped(f"{signal.Signals(signum).name} at epoch {epoch + 1}, step {step}",
                                               resume_point, log, 128 + signum)
                    log.read_losses()
                    if self.test_dataset is not None:
                        log.write(f"epoch {epoch + 1}: test loss {self.test_loss():.5f}")
                    resume_point = self.capture_resume_point(optimizer, epoch + 1, log.metrics)
                    due = time.time() - last_write >= config.checkpoint_every and epoch + 1 < config.max_epochs
                    if resume_point is not None and due:
                        self.keep(resume_point, log)
                        last_write = time.time()
                    if epoch + 1 in config.snapshots and self.rank == 0:
                        save_params(model, config.snapshots[epoch + 1])  # draws nothing random: the run goes on
                        log.write_metrics()  # the snapshot's loss and time, for knowledge_curve.py
            except LossNotFinite as error:
                raise self.stopped(str(error), resume_point, log, 1, advice="; a lower --learning_rate may help")
            stop.at_once = False  # a signal now waits for the metrics (and the caller's params) to be written
            log.close()
            log.write_metrics()
            if config.ckpt_path is not None and self.rank == 0:
                save_params(model, config.ckpt_path)
        return log.metrics

    def resume(self, optimizer):
        """Restore the state of config.checkpoint_path; returns its metrics and the epoch it starts."""
        state = checkpoint.load(self.config.checkpoint_path)
        checkpoint.restore(state, self.model, optimizer, self.data_generator, self.settings(),
                           self.config.checkpoint_path, self.device_kind)
        self.tokens = state["tokens"]
        if self.config.precision == "auto" and state.get("precision", self.precision) != self.precision:
            self.set_precision(state["precision"], "auto: the precision of the run resumed")
        return state["metrics"], state["epoch"]

    def capture_resume_point(self, optimizer, epoch, metrics):
        """
        The state at the start of `epoch`, from which --resume continues: written when a checkpoint
        is due and when the run stops. None when the run keeps no checkpoints (no checkpoint_path).
        """
        if self.config.checkpoint_path is None:
            return None
        return checkpoint.capture(self.model, optimizer, self.data_generator, epoch, self.tokens, metrics,
                                  self.settings(), self.precision, self.device_kind)

    def keep(self, resume_point, log):
        """Write the resume point as the checkpoint, and the metrics up to it."""
        if self.rank == 0:
            checkpoint.save(resume_point, self.config.checkpoint_path)
        log.write_metrics(len(resume_point["metrics"]))

    def stopped(self, what, resume_point, log, exit_status, advice=""):
        """Keep what a resume needs; the TrainingStopped that says `what` stopped the run, and how to go on."""
        if resume_point is None:
            log.write_metrics()
            return TrainingStopped(f"{what}: stopped. No checkpoint was kept (no checkpoint path){advice}", exit_status)
        self.keep(resume_point, log)
        return TrainingStopped(f"{what}: stopped. The state at the start of epoch {resume_point['epoch'] + 1} is in "
                               f"{self.config.checkpoint_path}: run the same command with --resume to continue from "
                               f"there{advice}", exit_status)

    def read(self, losses):
        """Device losses as floats, in one transfer; under DDP each the mean over the processes."""
        losses = torch.stack(list(losses))
        if self.world_size > 1:
            losses = distributed.mean_over_processes(losses)
        return losses.tolist()

    def settings(self):
        """What a checkpoint must share with the run that resumes it."""
        names = ["max_epochs", "batch_size", "learning_rate", "lr_decay", "warmup_tokens", "final_tokens"]
        return {**{name: getattr(self.config, name) for name in names}, "examples": len(self.train_dataset)}

    @torch.no_grad()
    def test_loss(self):
        """The mean batch loss on the test set; its corruption is drawn the same way at every epoch."""
        self.model.eval()
        batches = self.epoch_batches(self.test_dataset, torch.Generator().manual_seed(0))
        losses = self.read(self.loss(x, y, lengths) for x, y, lengths in batches)
        return sum(losses) / len(losses)


class TrainingStopped(Exception):
    """Training ended early (interrupted, or a loss that is not finite); exit_status for the shell."""

    def __init__(self, message, exit_status):
        super().__init__(message)
        self.exit_status = exit_status


class StopSignals:
    """
    Ctrl-C and SIGTERM, caught while in a `with`: `requested` lists those that came. The training
    loop looks after each step and stops, keeping a checkpoint; a second Ctrl-C stops at once,
    until the loop has ended (at_once cleared), when what is left is quick and must not be cut:
    run.py holds them until the params are written.
    """

    def __init__(self):
        self.requested, self.at_once, self.previous = [], True, {}

    def __enter__(self):
        try:
            self.previous = {s: signal.signal(s, self.request) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: signals cannot be caught here, nothing to restore
            pass
        return self

    def __exit__(self, *exception):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def request(self, signum, frame):
        if self.requested and signum == signal.SIGINT and self.at_once:
            raise KeyboardInterrupt
        self.requested.append(signum)
