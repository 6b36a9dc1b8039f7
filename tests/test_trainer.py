"""
The trainer against the spec: schedule, weight-decay groups, token counter, length groups
that change nothing, precision.
"""

import math
import random

import pytest
import torch
from torch.utils.data import TensorDataset

import trainer as trainer_module
import training_log
from conftest import real_data_path
from dataset import CharCorruptionDataset, NameDataset, row_lengths
from device import CPU, CUDA
from model import GPT, VARIANTS, GPTConfig
from trainer import BATCH_ROWS, Trainer, TrainerConfig, learning_rate_at, length_groups, parameter_groups


def test_trainer_config_defaults():
    c = TrainerConfig()
    assert (c.max_epochs, c.batch_size, c.learning_rate, c.betas) == (10, 64, 3e-4, (0.9, 0.95))
    assert (c.grad_norm_clip, c.weight_decay, c.lr_decay) == (1.0, 0.1, False)
    assert (c.warmup_tokens, c.final_tokens, c.ckpt_path, c.num_workers) == (375e6, 260e9, None, 0)
    assert TrainerConfig(batch_size=7).batch_size == 7


def test_learning_rate_schedule_matches_the_formula():
    config = TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=10240, final_tokens=75_187_200)
    assert learning_rate_at(5120, config) == pytest.approx(3e-3)
    for tokens in [10240, 20_000_000, 75_187_200, 100_000_000, 150_000_000, 242_000_000]:
        progress = (tokens - 10240) / (75_187_200 - 10240)
        want = 6e-3 * max(0.1, 0.5 * (1 + math.cos(math.pi * progress)))
        assert learning_rate_at(tokens, config) == pytest.approx(want, rel=1e-12)
    # the floor, and the rise past final_tokens that makes the loss plateau and fall again
    assert learning_rate_at(75_187_200, config) == pytest.approx(6e-4)
    assert learning_rate_at(150_000_000, config) > 5.9e-3
    assert learning_rate_at(123, TrainerConfig(learning_rate=1e-3)) == 1e-3


def test_weight_decay_groups_follow_the_original_names():
    model = GPT(GPTConfig(256, 128, variant="synthesizer"))
    decay, no_decay = parameter_groups(model, 0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert not_decayed == {n for n in names.values() if "bias" in n}
    assert {"pos_emb", "ln_f.weight", "blocks.0.ln1.weight", "blocks.0.attn.w2", "head.weight"} <= decayed
    assert "blocks.0.attn.b2" in decayed  # its name contains no "bias": decayed, as in the original


def padded_batch(lengths, T=127):
    x = torch.randint(2, 256, (len(lengths), T))
    y = torch.randint(2, 256, (len(lengths), T))
    for row, length in enumerate(lengths):
        x[row, length + 1:] = 0
        y[row, length:] = 0
    return x, y


def test_row_lengths_end_at_the_last_target_that_is_not_pad():
    x, y = padded_batch([5, 40, 12, 127])
    y[0, 2] = 0  # a PAD target inside a row does not end it
    y[2, :] = 0  # no target at all: runs at length 1
    assert row_lengths(y).tolist() == [5, 40, 1, 127]


def set_partitions(items):
    """Every way to split items into non-empty groups."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in set_partitions(rest):
        yield [[first]] + partition
        for i in range(len(partition)):
            yield partition[:i] + [[first] + partition[i]] + partition[i + 1:]


@pytest.mark.parametrize("group_cost", [0, 7, 40, 1000])
def test_length_groups_is_the_cheapest_of_all_groupings(group_cost):
    generator = torch.Generator().manual_seed(group_cost)
    for _ in range(20):
        lengths = torch.randint(1, 60, (int(torch.randint(1, 8, (), generator=generator)),),
                                generator=generator).tolist()
        groups = length_groups(lengths, group_cost)
        rows = sorted(int(r) for group, _ in groups for r in group)
        assert rows == list(range(len(lengths)))  # every row once
        for group, length in groups:
            assert length == max(lengths[int(r)] for r in group)
        cost = sum(len(group) * length + group_cost for group, length in groups)
        cheapest = min(sum(len(g) * max(lengths[r] for r in g) + group_cost for g in partition)
                       for partition in set_partitions(list(range(len(lengths)))))
        assert cost == cheapest


def test_length_groups_of_a_real_pretraining_batch():
    lengths = row_lengths(pretraining_batch(128)[1]).tolist()
    groups = length_groups(lengths, 64)
    computed = sum(len(group) * length for group, length in groups)
    assert len(groups) > 3
    assert computed < 1.2 * sum(lengths) < 0.7 * 128 * max(lengths)  # most of the padding is gone


def test_on_a_gpu_a_batch_stays_one_group_cut_after_its_longest_row():
    for x, y in [pretraining_batch(128), finetuning_batch(256)]:
        lengths = row_lengths(y).tolist()
        assert [(len(rows), length) for rows, length in length_groups(lengths, CUDA.group_cost)] \
            == [(len(lengths), max(lengths))]


def test_on_a_gpu_the_search_never_runs_for_a_batch_of_at_most_128_rows(monkeypatch):
    """With the GPU's group cost the bound settles every batch of up to block_size rows: one group, no search."""
    searches = []
    search = trainer_module.cheapest_groups
    monkeypatch.setattr(trainer_module, "cheapest_groups", lambda *args: searches.append(args) or search(*args))
    gpu = CUDA.group_cost
    generator = torch.Generator().manual_seed(0)
    batches = [[127] + [1] * 127, [1] * 128, [127] * 128, [64], [127, 1]]  # the most padding a batch can have first
    for _ in range(300):
        rows, longest = (int(torch.randint(1, high, (), generator=generator)) for high in (129, 128))
        batches.append(torch.randint(1, longest + 1, (rows,), generator=generator).tolist())
    for lengths in batches:
        assert [(len(rows), length) for rows, length in length_groups(lengths, gpu)] == [(len(lengths), max(lengths))]
    assert not searches
    for lengths in batches[:40]:  # the search itself agrees: one group is the cheapest
        assert len(search(lengths, gpu)) == 1
    # where a split can pay (more rows than the block has positions, and much padding), the search runs
    assert len(length_groups([127] * 100 + [1] * 156, gpu)) == 2 and len(searches) == 1


def pretraining_batch(rows):
    text = real_data_path("wiki.txt").read_text(encoding="utf-8")
    torch.manual_seed(0)
    x, y, _ = next(CharCorruptionDataset(text, 128).batches(rows, torch.Generator().manual_seed(0), "cpu"))
    return x, y


def finetuning_batch(rows):
    pretraining = CharCorruptionDataset(real_data_path("wiki.txt").read_text(encoding="utf-8"), 128)
    dataset = NameDataset(pretraining, real_data_path("birth_places_train.tsv").read_text(encoding="utf-8"))
    x, y, _ = next(dataset.batches(rows, None, "cpu"))
    return x, y


def no_dropout_model(variant, seed=0, **size):
    torch.manual_seed(seed)
    return GPT(GPTConfig(256, 128, variant=variant, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **size))


# the ways of running a batch's rows agree whatever the model's width and depth: a small model is as good a check
SMALL = dict(n_layer=2, n_head=4, n_embd=64)


@pytest.mark.parametrize("batch_rows", BATCH_ROWS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch", [pretraining_batch, finetuning_batch])
def test_grouped_loss_and_gradients_equal_the_padded_ones(variant, batch, batch_rows):
    """
    Trainer.loss, its rows run each way config.batch_rows offers (in length groups, each cut; in
    one group cut after the longest row; all at every position), against the model's own loss on
    all 127 positions.
    """
    x, y = batch(48)
    model = no_dropout_model(variant, **SMALL)
    trainer = Trainer(model, None, None, TrainerConfig(device="cpu", precision="fp32", batch_rows=batch_rows))
    trainer.group_cost = 16  # several groups even in a small batch
    assert len(length_groups(row_lengths(y).tolist(), trainer.group_cost)) > 1

    model.zero_grad()
    _, padded_loss = model(x, y)
    padded_loss.backward()
    padded_grads = {name: p.grad.clone() for name, p in model.named_parameters()}

    model.zero_grad()
    widths = []  # the positions each of the model's passes runs
    model.register_forward_hook(lambda module, inputs, output: widths.append(inputs[0].size(1)))
    grouped_loss = trainer.loss(x, y, row_lengths(y), backward=True)
    lengths = row_lengths(y).tolist()
    assert widths == {"grouped": [length for _, length in length_groups(lengths, 16)], "trimmed": [max(lengths)],
                      "padded": [127]}[batch_rows]
    assert torch.allclose(grouped_loss, padded_loss, rtol=1e-5, atol=0)
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, padded_grads[name], rtol=1e-3, atol=1e-6), name
    assert trainer.loss(x, y, row_lengths(y)).item() == pytest.approx(padded_loss.item(), rel=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_trainer_steps_end_with_the_same_params_grouped_or_not(variant):
    """Three steps with the batch's rows in length groups, in one group cut after the longest row, and padded."""
    x, y = pretraining_batch(64)
    batches = [(x[:32], y[:32]), (x[32:], y[32:]), (x[16:48], y[16:48])]
    params = {}
    for batch_rows in BATCH_ROWS:
        model = no_dropout_model(variant, **SMALL)
        trainer = Trainer(model, None, None, TrainerConfig(device="cpu", precision="fp32", learning_rate=3e-3,
                                                           lr_decay=True, warmup_tokens=100, final_tokens=10_000,
                                                           batch_rows=batch_rows))
        optimizer = trainer.optimizer()
        for batch in batches:
            trainer.step(optimizer, *batch, row_lengths(batch[1]))
        assert trainer.tokens == 96 * 127
        params[batch_rows] = model.state_dict()
    initial = no_dropout_model(variant, **SMALL).state_dict()
    # Adam turns rounding differences of near-zero gradients into moves of up to 1e-5; three
    # steps at a learning rate of 3e-3 move the weights by about 1e-2, a thousand times more
    for name, value in params["grouped"].items():
        for other in ["trimmed", "padded"]:
            assert torch.allclose(value, params[other][name], rtol=1e-4, atol=5e-5), (name, other)
        if not name.endswith(("mask", "rope_cache")):
            assert not torch.allclose(value, initial[name]), name  # the steps moved every parameter


def test_an_unknown_way_of_running_a_batchs_rows_is_refused():
    with pytest.raises(ValueError, match="unknown batch_rows 'cut'; choose one of grouped, trimmed, padded"):
        Trainer(GPT(GPTConfig(256, 128, n_layer=1, n_head=2, n_embd=16)), None, None,
                TrainerConfig(device="cpu", batch_rows="cut"))


def test_a_data_loader_builds_each_batch_one_example_at_a_time_as_the_original():
    """config.data_loader: batches of __getitem__'s examples (in worker processes), not the dataset's batches()."""
    from test_dataset import CORPUS
    pretraining = CharCorruptionDataset(CORPUS + "\nWhere was Ada born? In London.", 32)
    places = "\n".join(f"Where was {name} born?\t{place}" for name, place in
                       [("Ada", "London"), ("Alan", "Maida Vale"), ("Grace", "Harvard"), ("Ann Lee", "Leeds")] * 2)
    finetuning = NameDataset(pretraining, places)
    model = GPT(GPTConfig(pretraining.vocab_size, 32, n_layer=1, n_head=2, n_embd=16))

    def batches(dataset, **options):
        trainer = Trainer(model, None, None, TrainerConfig(batch_size=3, device="cpu", **options))
        return list(trainer.epoch_batches(dataset, torch.Generator().manual_seed(0)))

    own, loaded = batches(finetuning), batches(finetuning, data_loader=True, num_workers=2)
    assert [len(x) for x, _, _ in loaded] == [3, 3, 2]
    for got, want in zip(loaded, own, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    random.seed(5)  # span corruption draws from Python's generator one example at a time
    examples = [pretraining[i] for i in range(len(pretraining))]
    random.seed(5)
    loaded = batches(pretraining, data_loader=True)
    assert torch.equal(torch.cat([x for x, _, _ in loaded]), torch.stack([x for x, _ in examples]))
    assert torch.equal(torch.cat([y for _, y, _ in loaded]), torch.stack([y for _, y in examples]))
    assert torch.equal(torch.cat([lengths for _, _, lengths in loaded]),
                       row_lengths(torch.stack([y for _, y in examples])))


def test_counter_counts_every_target_position_pad_included():
    torch.manual_seed(0)
    x, y = padded_batch([3] * 10)
    config = TrainerConfig(max_epochs=2, batch_size=4, learning_rate=1e-3, lr_decay=True,
                           warmup_tokens=10, final_tokens=10_000, device="cpu")
    model = GPT(GPTConfig(256, 128, n_layer=1, n_head=2, n_embd=16))
    trainer = Trainer(model, TensorDataset(x, y), None, config)
    optimizer_lrs = []
    original_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        optimizer_lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = recording_step
    try:
        trainer.train()
    finally:
        torch.optim.AdamW.step = original_step
    # batches of 4, 4, 2 rows per epoch, each row 127 positions, the short last batch counted as 2
    assert trainer.tokens == 2 * 10 * 127
    # the first step runs at the configured rate; each later one at the schedule after the tokens so far
    seen = [4, 8, 10, 14, 18, 20]
    want = [1e-3] + [learning_rate_at(127 * n, config) for n in seen[:-1]]
    assert optimizer_lrs == pytest.approx(want, rel=1e-12)


def test_training_lowers_the_loss_and_keeps_fp32_weights():
    torch.manual_seed(0)
    x, y = padded_batch([20] * 16)
    model = GPT(GPTConfig(256, 128, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        before = model.eval()(x, y)[1].item()
    Trainer(model, TensorDataset(x, y), None,
            TrainerConfig(max_epochs=30, batch_size=8, learning_rate=3e-3, device="cpu")).train()
    with torch.no_grad():
        after = model.eval()(x, y)[1].item()
    assert after < before - 1.0
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_precision_as_asked_and_auto():
    assert trainer_module.choose_precision("fp32", CPU) == ("fp32", "as asked")
    assert trainer_module.choose_precision("bf16", CPU) == ("bf16", "as asked")
    assert trainer_module.choose_precision("auto", CUDA) == ("bf16", "auto: CUDA")
    with pytest.raises(ValueError, match="unknown precision 'fp16'; choose auto, fp32 or bf16"):
        trainer_module.choose_precision("fp16", CPU)


def test_auto_on_a_cpu_takes_bf16_for_big_steps_on_a_cpu_whose_bf16_products_are_fast(monkeypatch):
    choose, big, small = trainer_module.choose_precision, 128 * 256, 8 * 128
    monkeypatch.setattr(trainer_module, "cpu_bf16_product_speedup", lambda: 4.44)
    assert choose("auto", CPU, big) == ("bf16", "auto: bf16 matrix products run 4.4x as fast as fp32 on this CPU, "
                                                "and the step is big")
    assert choose("auto", CPU, small) == ("fp32", "auto: a CPU, and a step too small for bf16 to pay (batch x "
                                                  "n_embd 1024 < 16384)")
    monkeypatch.setattr(trainer_module, "cpu_bf16_product_speedup", lambda: 0.55)
    assert choose("auto", CPU, big) == ("fp32", "auto: bf16 matrix products run 0.6x as fast as fp32 on this CPU")
    monkeypatch.setattr(trainer_module, "cpu_bf16_product_speedup", lambda: pytest.fail("measured for nothing"))
    assert choose("auto", CPU, small)[0] == "fp32" and choose("fp32", CPU, big) == ("fp32", "as asked")


def test_the_trainer_decides_by_batch_rows_times_n_embd_and_measures_products_once(monkeypatch):
    measured = []
    monkeypatch.setattr(trainer_module, "cpu_bf16_product_speedup", lambda: measured.append(1) or 3.0)
    for batch_size, n_embd, expected in [(128, 256, "bf16"), (64, 256, "bf16"), (63, 256, "fp32"), (8, 128, "fp32"),
                                         (256, 64, "bf16")]:
        model = GPT(GPTConfig(20, 16, n_layer=1, n_head=2, n_embd=n_embd))
        trainer = Trainer(model, None, None, TrainerConfig(batch_size=batch_size, device="cpu"))
        assert trainer.precision == expected, (batch_size, n_embd)
    monkeypatch.undo()
    trainer_module.cpu_bf16_product_speedup.cache_clear()
    first = trainer_module.cpu_bf16_product_speedup()
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: pytest.fail("measured twice"))
    assert first > 0 and trainer_module.cpu_bf16_product_speedup() == first


def test_the_product_measure_takes_the_best_of_each_precision_in_turn_on_one_thread(monkeypatch):
    """Other processes only slow some products down: the measure is the ratio of the fastest of each."""
    seconds = {torch.float32: iter([9.0, 4.0, 30.0, 4.5]), torch.bfloat16: iter([1.0, 20.0, 2.5, 2.0])}
    clock, order, threads = [0.0], [], []

    class Timed(torch.Tensor):  # a product whose duration is the next of its dtype's list
        def __matmul__(self, other):
            order.append(self.dtype)
            threads.append(torch.get_num_threads())
            clock[0] += next(seconds[self.dtype])

    monkeypatch.setattr(trainer_module.torch, "ones", lambda *shape, dtype: torch.empty(shape, dtype=dtype).as_subclass(Timed))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: clock[0])
    threads_before = torch.get_num_threads()
    torch.set_num_threads(2)  # a process of two threads measures on one, then has its two back
    trainer_module.cpu_bf16_product_speedup.cache_clear()
    try:
        assert trainer_module.cpu_bf16_product_speedup(repeats=4) == 4.0 / 1.0
        assert torch.get_num_threads() == 2
    finally:
        trainer_module.cpu_bf16_product_speedup.cache_clear()
        torch.set_num_threads(threads_before)
    assert order == [torch.float32, torch.bfloat16] * 4 and threads == [1] * 8


def test_a_run_resumed_goes_on_in_the_precision_it_started_in(monkeypatch, tmp_path):
    """auto chose bf16 for the run; resumed where auto would choose fp32, it still ends as the uninterrupted run."""
    from test_dataset import LONG_DOCS, SHORT_DOCS
    dataset = CharCorruptionDataset("\n".join((LONG_DOCS + SHORT_DOCS) * 2), 32)
    monkeypatch.setattr(trainer_module, "BF16_MIN_WORK", 0)

    def run(speedup, max_epochs, resume):
        monkeypatch.setattr(trainer_module, "cpu_bf16_product_speedup", lambda: speedup)
        torch.manual_seed(0)
        model = GPT(GPTConfig(dataset.vocab_size, 32, n_layer=1, n_head=2, n_embd=16))
        trainer = Trainer(model, dataset, None, TrainerConfig(
            max_epochs=max_epochs, batch_size=4, learning_rate=3e-3, device="cpu", checkpoint_every=0,
            checkpoint_path=tmp_path / "run.checkpoint", resume=resume))
        trainer.train()
        return trainer, model.state_dict()

    whole, whole_params = run(4.0, 3, False)  # leaves the state at the start of epoch 3
    assert whole.precision == "bf16"
    resumed, resumed_params = run(0.5, 3, True)
    assert (resumed.precision, resumed.precision_reason) == ("bf16", "auto: the precision of the run resumed")
    assert all(torch.equal(whole_params[name], tensor) for name, tensor in resumed_params.items())


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_keeps_the_loss_close_and_the_weights_fp32(variant):
    x, y = padded_batch([30, 71, 9, 50])
    model = no_dropout_model(variant, n_layer=3, n_head=4, n_embd=64)
    fp32 = Trainer(model, None, None, TrainerConfig(device="cpu", precision="fp32")).loss(x, y, row_lengths(y))
    bf16_trainer = Trainer(model, None, None, TrainerConfig(device="cpu", precision="bf16"))
    bf16 = bf16_trainer.loss(x, y, row_lengths(y), backward=True)
    assert bf16_trainer.dtype == torch.bfloat16
    assert bf16.dtype == torch.float32 and bf16.item() != fp32.item()  # really computed in bf16
    assert bf16.item() == pytest.approx(fp32.item(), rel=1e-2)
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())


def train_on_span_corruption(monkeypatch, read_steps):
    """Three epochs of a tiny model on span corruption, reading the losses every read_steps steps."""
    from test_dataset import LONG_DOCS, SHORT_DOCS
    monkeypatch.setattr(training_log, "LOSS_READ_STEPS", read_steps)
    reads = []
    real_read = Trainer.read
    monkeypatch.setattr(Trainer, "read", lambda self, losses: reads.append(list(losses)) or real_read(self, reads[-1]))
    torch.manual_seed(0)
    dataset = CharCorruptionDataset("\n".join((LONG_DOCS + SHORT_DOCS) * 3), 32)  # 18 documents
    model = GPT(GPTConfig(dataset.vocab_size, 32, n_layer=1, n_head=2, n_embd=16))
    config = TrainerConfig(max_epochs=3, batch_size=4, learning_rate=3e-3, lr_decay=True, warmup_tokens=100,
                           final_tokens=5000, device="cpu", precision="fp32")
    metrics = Trainer(model, dataset, None, config).train()
    return metrics, model.state_dict(), [len(losses) for losses in reads]


def test_losses_read_in_chunks_give_the_same_training_and_log(monkeypatch):
    every_step, params, reads = train_on_span_corruption(monkeypatch, 1)
    assert reads == [1] * 15  # 5 steps (4, 4, 4, 4, 2 rows) in each of 3 epochs
    assert [r["step"] for r in every_step] == list(range(1, 16))
    assert [r["epoch"] for r in every_step] == [1] * 5 + [2] * 5 + [3] * 5
    for read_steps, want_reads in [(3, [3, 2] * 3), (1000, [5] * 3)]:  # and at each epoch's end
        chunked, chunked_params, reads = train_on_span_corruption(monkeypatch, read_steps)
        assert reads == want_reads
        without_time = [{k: v for k, v in r.items() if k != "wall_time"} for r in every_step]
        assert [{k: v for k, v in r.items() if k != "wall_time"} for r in chunked] == without_time
        assert all(torch.equal(chunked_params[name], value) for name, value in params.items())
