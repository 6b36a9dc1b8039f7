"""
The main job's own logic: where outputs go per seed, how accuracies are read and summarised,
and how a run that was stopped goes on where it stopped (with a stand-in for the steps, and
once for real on the CPU).
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import handout
import handout_ledger
import handout_reference
import handout_report
import handout_step
from conftest import ROOT, real_data_path
from device import CPU, CUDA


HANDOUT_ROWS = [row for row, _, _ in handout.handout_steps() if row]


def test_the_steps_are_the_handouts_commands_in_order():
    commands = [" ".join(arguments) for _, arguments, _ in handout.handout_steps()]
    assert commands[0] == ("src/run.py finetune vanilla wiki.txt --writing_params_path vanilla.model.params "
                           "--finetune_corpus_path birth_places_train.tsv")
    assert commands[3] == "src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params"
    assert commands[7] == "src/run.py pretrain synthesizer wiki.txt --writing_params_path synthesizer.pretrain.params"
    assert commands[-1] == "london_baseline.py --eval_corpus_path birth_dev.tsv"
    outputs = {a[a.index("--outputs_path") + 1] for _, a, _ in handout.handout_steps() if "--outputs_path" in a}
    assert outputs == {f"{run}.{split}.predictions" for run in ["vanilla.nopretrain", "vanilla.pretrain",
                                                                "synthesizer.pretrain"] for split in ["dev", "test"]}
    assert HANDOUT_ROWS == ["vanilla, no pretraining", "vanilla, pretrain + finetune",
                            "synthesizer, pretrain + finetune", "London baseline"]
    assert set(HANDOUT_ROWS) < set(handout_reference.reference_rows())


def test_variants_add_their_steps_in_the_order_given_a_later_years_with_its_own_baseline():
    steps = handout.handout_steps(["rope", "vanilla", "perceiver"])
    commands = [" ".join(arguments) for _, arguments, _ in steps]
    assert commands[:3] == [" ".join(arguments) for _, arguments, _ in handout.handout_steps()[:3]]
    # 2(d) again for rope, under its own names, before its pretraining
    assert commands[3:6] == [command.replace("vanilla", "rope") for command in commands[:3]]
    assert commands[5] == ("src/run.py evaluate rope wiki.txt --reading_params_path rope.model.params "
                           "--eval_corpus_path birth_test_inputs.tsv --outputs_path rope.nopretrain.test.predictions")
    assert commands[6] == "src/run.py pretrain rope wiki.txt --writing_params_path rope.pretrain.params"
    assert commands[10] == "src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params"
    assert commands[14] == ("src/run.py finetune perceiver wiki.txt --writing_params_path perceiver.model.params "
                            "--finetune_corpus_path birth_places_train.tsv")
    assert commands[17] == "src/run.py pretrain perceiver wiki.txt --writing_params_path perceiver.pretrain.params"
    assert commands[20] == ("src/run.py evaluate perceiver wiki.txt --reading_params_path perceiver.finetune.params "
                            "--eval_corpus_path birth_test_inputs.tsv "
                            "--outputs_path perceiver.pretrain.test.predictions")
    assert len(commands) == 22 and [training for _, _, training in steps[3:7]] == ["finetune", None, None, "pretrain"]
    assert [row for row, _, _ in steps if row] == [
        "vanilla, no pretraining", "rope, no pretraining", "rope, pretrain + finetune",
        "vanilla, pretrain + finetune", "perceiver, no pretraining", "perceiver, pretrain + finetune",
        "London baseline"]
    header, rows = handout_report.accuracy_table([{row: 1.0 for row, _, _ in steps if row}], [{}])
    assert [row[0] for row in rows] == ["London baseline", "vanilla, no pretraining", "vanilla, pretrain + finetune",
                                        "rope, no pretraining", "rope, pretrain + finetune",
                                        "perceiver, no pretraining", "perceiver, pretrain + finetune"]
    assert rows[3][3:] == ("not asked", "none published")
    assert rows[4][4] == "30-40 (2023-24; vanilla 23-28 there)"


def test_the_handouts_own_variants_share_vanillas_baseline():
    assert handout.HANDOUT_VARIANTS == ["vanilla", "synthesizer"]
    for variants in (["synthesizer"], ["synthesizer", "vanilla"]):
        rows = [row for row, _, _ in handout.handout_steps(variants) if row]
        assert [row for row in rows if "no pretraining" in row] == ["vanilla, no pretraining"]


def test_further_seeds_keep_their_outputs_in_their_own_folder():
    arguments = ["src/run.py", "finetune", "vanilla", "wiki.txt", "--reading_params_path", "a.params",
                 "--writing_params_path", "b.params", "--finetune_corpus_path", "birth_places_train.tsv"]
    assert handout.in_folder(arguments, Path(".")) == arguments
    moved = handout.in_folder(arguments, Path("runs/seed-1"))
    assert moved == ["src/run.py", "finetune", "vanilla", "wiki.txt", "--reading_params_path", "runs/seed-1/a.params",
                     "--writing_params_path", "runs/seed-1/b.params", "--finetune_corpus_path",
                     "birth_places_train.tsv"]


def test_accuracy_is_read_from_the_printed_line():
    assert handout_step.accuracy("data has 5 characters\nCorrect: 49.0 out of 500.0: 9.8%\n") == 9.8
    assert handout_step.accuracy("Predictions written to x; no targets provided\n") is None


def test_accuracies_over_seeds_are_mean_and_sample_standard_deviation():
    assert handout_report.summary([5.0]) == "5.0"
    assert handout_report.summary([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert handout_report.summary([None]) == "?"
    models = [name for name in HANDOUT_ROWS if name != "London baseline"]
    header, rows = handout_report.accuracy_table([{name: 10.0 for name in HANDOUT_ROWS},
                                                  {name: 20.0 for name in HANDOUT_ROWS}],
                                                 [{name: 30.0 for name in models}, {name: 34.0 for name in models}])
    assert header[1:3] == ("this run", "first character given")
    assert rows[0] == ("London baseline", "15.0 ± 7.1", "", "5.0", "5.0")  # no model: no first character
    assert rows[1] == ("vanilla, no pretraining", "15.0 ± 7.1", "32.0 ± 2.8", "1.0", "1.4")
    assert handout_report.markdown_table(("a", "b"), [("1", "2")]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"


def test_the_text_table_lines_up():
    text = handout_report.text_table(("run", "x"), [("London baseline", "5.0"), ("v", "10.0")])
    lines = text.splitlines()
    assert lines[0] == "run              x"
    assert lines[2] == "London baseline  5.0"


def recorded_sequence(monkeypatch, seed, recipe, folder):
    commands = []

    def run_step(arguments, check=True):
        commands.append(arguments)
        return "Correct: 10.0 out of 500.0: 2.0%\n", 1.5, 0

    monkeypatch.chdir(folder)
    monkeypatch.setattr(handout_ledger, "run_step", run_step)
    results, seconds, _ = handout.run_sequence(seed, Path("."), recipe)
    return commands, results, seconds


def test_the_full_run_is_the_handouts_commands_unchanged(monkeypatch, tmp_path):
    commands, results, seconds = recorded_sequence(monkeypatch, 0, {}, tmp_path)
    assert commands == [arguments for _, arguments, _ in handout.handout_steps()]
    assert results == {name: 2.0 for name in HANDOUT_ROWS} and seconds == 1.5 * len(commands)


def test_a_recipe_adds_its_flags_to_each_kind_of_step(monkeypatch, tmp_path):
    recipe = {"model": ["--n_layer", "2"], "pretrain": ["--max_epochs", "7"], "finetune": ["--max_epochs", "5"],
              "finetune from pretrained": ["--max_epochs", "3"]}
    commands, _, _ = recorded_sequence(monkeypatch, 4, recipe, tmp_path)
    for (_, arguments, training), command in zip(handout.handout_steps(), commands):
        if arguments[0] != "src/run.py":
            assert command == arguments  # the London baseline builds no model
        elif training is None:
            assert command == arguments + ["--n_layer", "2"]  # evaluate: the model's size only
        else:
            assert command == arguments + ["--n_layer", "2"] + recipe[training] + ["--seed", "4"]


def test_the_2023_24_schedule_ends_the_full_runs_cosine_with_its_650_epochs():
    assert handout.choose_recipe("full", "2021", CPU) == {}
    assert handout.choose_recipe("auto", "2021", CPU) is handout.CPU_RECIPE
    recipe = handout.choose_recipe("auto", "2023-24", CUDA)
    assert recipe == {"pretrain": ["--cosine_epochs", "650"]}
    commands = [handout.step_command(arguments, training, Path("."), recipe, 0)
                for _, arguments, training in handout.handout_steps(["rope"])]
    assert [command for command in commands if "--cosine_epochs" in command] == [
        ["src/run.py", "pretrain", "rope", "wiki.txt", "--writing_params_path", "rope.pretrain.params",
         "--cosine_epochs", "650"]]
    assert handout_report.describe(recipe) == ("the handout's full run (650 pretraining epochs per variant, the "
                                               "handout's model and flags and the 2023-24 schedule (pretrain "
                                               "`--cosine_epochs 650`))")
    with pytest.raises(ValueError, match="--schedule 2023-24 is for the full run"):
        handout.choose_recipe("cpu", "2023-24", CUDA)
    # what the flag does in run.py: final_tokens = 650 x len(pretraining corpus) x block_size
    import run
    corpus = [None] * 2937
    assert run.final_tokens(corpus, corpus, 650) == 650 * 2937 * 128
    assert run.final_tokens(corpus, corpus) == 200 * 2937 * 128


def test_the_recipe_is_described_by_its_flags():
    assert handout_report.describe({}).startswith("the handout's full run")
    assert handout_report.describe({"model": ["--n_layer", "2"], "pretrain": ["--max_epochs", "7"]}) == (
        "the CPU recipe, the handout's commands with these flags added: every command `--n_layer 2`; "
        "pretrain `--max_epochs 7`")
    for flags in handout.CPU_RECIPE.values():
        assert " ".join(flags) in handout_report.describe(handout.CPU_RECIPE)


def test_the_short_run_is_the_handouts_model_with_its_pretraining_and_cosine_cut_to_short_epochs():
    import run
    from model import GPTConfig

    recipe = handout.choose_recipe("short", "2021", CPU)
    assert recipe is handout.SHORT_RECIPE and handout.choose_recipe("short", "2021", CUDA) is recipe
    epochs = int(handout.SHORT_EPOCHS)
    assert 0 < epochs < 650
    corpus = [None] * 2937
    for _, arguments, training in handout.handout_steps():
        if arguments[0] != "src/run.py":
            continue
        args = run.parse_args(arguments[1:] + handout.recipe_flags(recipe, training))
        assert (args.n_layer, args.n_head, args.n_embd) == (GPTConfig.n_layer, GPTConfig.n_head, GPTConfig.n_embd)
        cut = (epochs, epochs) if training == "pretrain" else (None, None)  # the finetunings are the handout's
        assert (args.max_epochs, args.cosine_epochs) == cut
        assert (args.batch_size, args.learning_rate, args.dropout) == (None, None, None)
    # the cosine reaches its floor with the run's last epoch: at 200, the handout's own schedule to the token
    assert run.final_tokens(corpus, corpus, float(epochs)) == epochs * 2937 * 128 == run.final_tokens(corpus)
    assert handout_report.describe(recipe) == (f"the short run, the handout's model and commands with pretrain "
                                               f"`--max_epochs {epochs} --cosine_epochs {epochs}` added")
    with pytest.raises(ValueError, match=r"^--schedule 2023-24 is for the full run: the short run's pretraining "):
        handout.choose_recipe("short", "2023-24", CUDA)
    assert handout.choose_recipe("auto", "2021", CPU) is handout.CPU_RECIPE  # not (yet) the default


def test_run_py_accepts_every_command_of_the_cpu_recipe():
    import run
    from params import build_model

    for _, arguments, training in handout.handout_steps():
        if arguments[0] != "src/run.py":
            continue
        args = run.parse_args(arguments[1:] + handout.recipe_flags(handout.CPU_RECIPE, training))
        assert (args.n_layer, args.n_head, args.n_embd) == (2, 8, 128)
        if training == "pretrain":
            assert (args.max_epochs, args.batch_size, args.learning_rate, args.dropout, args.cosine_epochs) == (
                60, 8, 1e-3, 0.0, 60.0)
        elif training is not None:  # the handout's finetunings
            assert (args.max_epochs, args.batch_size, args.learning_rate, args.dropout, args.cosine_epochs) == (
                None, None, None, None, None)
    model = build_model(256, 128, "vanilla", args)
    d, vocabulary, block = 128, 256, 128
    per_layer = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d  # attention, MLP, 2 LayerNorms
    embeddings_and_head = vocabulary * d + block * d + 2 * d + d * vocabulary
    assert sum(p.numel() for p in model.parameters()) == 2 * per_layer + embeddings_and_head


def test_a_training_steps_files_are_the_ones_run_py_writes(tmp_path, monkeypatch):
    """The params, metrics log and checkpoint handout.py expects of a pretraining, against a real one."""
    import run

    monkeypatch.chdir(tmp_path)
    Path("wiki.txt").write_text("Ada Lovelace. Born in London.\nAlan Turing. Born in Maida Vale.", encoding="utf-8")
    _, arguments, training = handout.handout_steps(["vanilla"])[3]
    command = handout.step_command(arguments, training, Path("."), TINY_RECIPE, 0, handout.PassedOn(device="cpu"))
    inputs, outputs = handout_step.step_files(command)
    checkpoint = handout_step.step_checkpoint(command)
    assert inputs == ["wiki.txt"] and checkpoint is not None
    files_as_params_are_saved = []
    save_params = run.save_params

    def save_and_look(model, path):  # the checkpoint is still there: run.py removes it once the params are written
        save_params(model, path)
        files_as_params_are_saved.extend(file.name for file in Path(".").iterdir())

    monkeypatch.setattr(run, "save_params", save_and_look)
    run.main(command[1:])
    assert sorted(files_as_params_are_saved) == sorted([*inputs, *outputs, str(checkpoint)])
    assert sorted(path.name for path in Path(".").iterdir()) == sorted([*inputs, *outputs])


def test_results_md_names_the_recipe_that_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header, rows = handout_report.accuracy_table([{name: 1.0 for name in HANDOUT_ROWS}], [{}])
    for recipe, opening in [(handout.CPU_RECIPE, "**The CPU recipe, the handout's commands with these flags added: "
                                                 "every command `--n_layer 2 --n_head 8 --n_embd 128`;"),
                            (handout.SHORT_RECIPE, "**The short run, the handout's model and commands with "
                                                   "pretrain `--max_epochs"),
                            ({}, "The handout's full run (650 pretraining epochs per variant")]:
        handout_report.write_results(header, rows, [0], recipe, 22.1, "a CPU", [], "vanilla", "report")
        assert Path("RESULTS.md").read_text(encoding="utf-8").split("\n")[4].startswith(opening)


# -----------------------------------------------------------------------------
# going on where a run stopped

RECIPE = {"model": ["--n_layer", "1"], "pretrain": ["--max_epochs", "7"], "finetune": ["--max_epochs", "5"],
          "finetune from pretrained": ["--max_epochs", "3"]}
PRETRAIN = "src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A folder to run the sequence in, with stand-ins for the data files."""
    monkeypatch.chdir(tmp_path)
    for name in ["wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"]:
        Path(name).write_text(f"the contents of {name}\n", encoding="utf-8")
    return tmp_path


def fake_step(commands, stop=None):
    """
    A run_step that records its commands and, like a real step, makes each output from its
    command and inputs, and prints an accuracy for birth_dev.tsv. stop(command) may raise
    StepStopped instead.
    """
    def run_step(arguments, check=True):
        commands.append(arguments)
        if stop is not None:
            stop(arguments)
        command = [a for a in arguments if a != "--resume"]
        inputs, outputs = handout_step.step_files(command)
        made = " ".join(command + [str(handout_ledger.sha256(path)) for path in inputs])
        for path in outputs:
            Path(path).write_text(made, encoding="utf-8")
        return "Correct: 10.0 out of 500.0: 2.0%\n" if "birth_dev.tsv" in command else "", 1.5, 0

    return run_step


def sequence(monkeypatch, recipe=RECIPE, stop=None):
    """The commands run_sequence runs in the working folder now, and what it returns."""
    commands = []
    monkeypatch.setattr(handout_ledger, "run_step", fake_step(commands, stop))
    return commands, handout.run_sequence(0, Path("."), recipe)


def handout_commands(indices):
    steps = handout.handout_steps()
    return [" ".join(steps[i][1]) for i in indices]


def which_steps(commands):
    """The handout's commands behind commands run (their recipe's flags and --resume left out)."""
    known = [" ".join(arguments) for _, arguments, _ in handout.handout_steps()]
    return [next(c for c in known if " ".join(command).startswith(c)) for command in commands]


def ledger():
    return json.loads(Path(handout_ledger.LEDGER_NAME).read_text(encoding="utf-8"))


def stop_vanilla_pretraining(keep_checkpoint):
    """A stop(command) for fake_step: SIGTERM in the vanilla pretraining, its checkpoint kept or not."""
    def stop(command):
        if " ".join(command).startswith(PRETRAIN):
            if keep_checkpoint:
                Path("vanilla.pretrain.params.checkpoint").write_text("state", encoding="utf-8")
            raise handout_step.StepStopped(signal.SIGTERM, 143, "number of parameters: 1\n", 2.0)

    return stop


def test_a_second_run_skips_every_step_and_tables_the_first_runs_results(workspace, monkeypatch, capsys):
    first, (results, seconds, seconds_now) = sequence(monkeypatch)
    assert len(first) == 12 and seconds == seconds_now == 12 * 1.5
    capsys.readouterr()
    second, again = sequence(monkeypatch)
    assert second == [] and again == (results, seconds, 0.0)
    assert results == {name: 2.0 for name in HANDOUT_ROWS}
    log = capsys.readouterr().out
    for command in first:
        assert (f"$ python {shlex.join(command)}\n(skipped: done before, in 2 s, with the same command and inputs; "
                f"its outputs are as it left them)\n") in log
    assert log.count("\nCorrect: 10.0 out of 500.0: 2.0%\n") == 4  # the dev evaluations and London echoed


def test_a_changed_pretraining_flag_redoes_exactly_the_steps_that_depend_on_the_pretrained_params(workspace,
                                                                                                    monkeypatch):
    sequence(monkeypatch)
    commands, _ = sequence(monkeypatch, {**RECIPE, "pretrain": ["--max_epochs", "8"]})
    # both pretrainings, and the finetunings and evaluations downstream of them; not 2(d) nor London
    assert which_steps(commands) == handout_commands(range(3, 11))
    assert commands[0][-2:] == ["--max_epochs", "8"] and commands[1][-2:] == ["--max_epochs", "3"]
    assert which_steps(sequence(monkeypatch)[0]) == handout_commands(range(3, 11))  # and back


def test_a_damaged_or_deleted_output_redoes_only_its_step(workspace, monkeypatch):
    sequence(monkeypatch)
    with open("vanilla.pretrain.dev.predictions", "a", encoding="utf-8") as f:
        f.write("London\n")
    Path("synthesizer.pretrain.test.predictions").unlink()
    commands, _ = sequence(monkeypatch)
    assert which_steps(commands) == handout_commands([5, 10])
    # remade exactly as before, the params of 2(d) leave the evaluations that read them alone
    Path("vanilla.model.params").write_text("damaged", encoding="utf-8")
    assert which_steps(sequence(monkeypatch)[0]) == handout_commands([0])
    assert sequence(monkeypatch)[0] == []


def test_a_stopped_training_step_resumes_from_its_checkpoint(workspace, monkeypatch):
    with pytest.raises(handout_step.StepStopped):
        sequence(monkeypatch, stop=stop_vanilla_pretraining(keep_checkpoint=True))
    record = ledger()[PRETRAIN]
    assert record["finished"] is False and record["seconds"] == 2.0 and record["stdout"] == "number of parameters: 1\n"
    assert "--resume" not in record["command"]
    commands, (results, seconds, seconds_now) = sequence(monkeypatch)
    assert which_steps(commands) == handout_commands(range(3, 12))
    assert commands[0] == record["command"] + ["--resume"]
    assert all("--resume" not in command for command in commands[1:])
    assert ledger()[PRETRAIN]["finished"] is True and ledger()[PRETRAIN]["seconds"] == 2.0 + 1.5
    assert seconds == 12 * 1.5 + 2.0 and seconds_now == 9 * 1.5
    assert results == {name: 2.0 for name in HANDOUT_ROWS}


@pytest.mark.parametrize("change", ["flags changed", "checkpoint lost"])
def test_a_stopped_training_step_starts_afresh_when_its_checkpoint_is_not_for_this_command(workspace, monkeypatch,
                                                                                          change):
    with pytest.raises(handout_step.StepStopped):
        sequence(monkeypatch, stop=stop_vanilla_pretraining(keep_checkpoint=change == "flags changed"))
    checkpoints_seen = []

    def stop(command):
        checkpoints_seen.append(Path("vanilla.pretrain.params.checkpoint").exists())

    recipe = {**RECIPE, "pretrain": ["--max_epochs", "8"]} if change == "flags changed" else RECIPE
    commands, _ = sequence(monkeypatch, recipe, stop)
    assert which_steps(commands) == handout_commands(range(3, 12))
    assert commands[0][-2:] == recipe["pretrain"] and checkpoints_seen[0] is False
    assert ledger()[PRETRAIN]["seconds"] == 1.5  # the time spent on the lost attempt is not the params'


@pytest.mark.parametrize("index, finished", [(3, True), (5, False)])
def test_a_step_stopped_as_it_exits_is_done_if_it_trains(workspace, monkeypatch, index, finished):
    # run.py writes the params when training has ended; an evaluation prints its accuracy after its predictions
    stopped = " ".join(handout.handout_steps()[index][1])
    make_outputs = fake_step([])

    def run_step(arguments, check=True):
        output, seconds, status = make_outputs(arguments, check)
        if " ".join(arguments).startswith(stopped):
            raise handout_step.StepStopped(signal.SIGTERM, -signal.SIGTERM, "", seconds)
        return output, seconds, status

    monkeypatch.setattr(handout_ledger, "run_step", run_step)
    with pytest.raises(handout_step.StepStopped):
        handout.run_sequence(0, Path("."), RECIPE)
    assert ledger()[stopped]["finished"] is finished
    commands, _ = sequence(monkeypatch)
    first_run_again = index + 1 if finished else index
    assert which_steps(commands) == handout_commands(range(first_run_again, 12))


def test_a_failed_step_stops_handout_py_and_is_recorded_unfinished(workspace, monkeypatch):
    def stop(command):
        if command[0] == "london_baseline.py":
            raise handout_step.StepStopped(0, 2, "", 0.5)

    monkeypatch.setattr(handout_ledger, "run_step", fake_step([], stop))
    monkeypatch.setattr(handout, "CPU_RECIPE", RECIPE)
    with pytest.raises(SystemExit) as stopped:
        handout.main(["--length", "cpu"])
    assert stopped.value.code == ("handout.py: this step failed (exit status 2); the steps before it are recorded in "
                               "handout.steps.json: once the cause is fixed, `python handout.py --length cpu` goes "
                               "on from this step")
    assert ledger()["london_baseline.py --eval_corpus_path birth_dev.tsv"]["finished"] is False
    assert all(record["finished"] for key, record in ledger().items() if key.startswith("src/run.py"))


def test_a_damaged_ledger_is_reported_not_overwritten(workspace, monkeypatch):
    Path(handout_ledger.LEDGER_NAME).write_text('{"src/run.py": {"command": ', encoding="utf-8")
    with pytest.raises(handout.InputError, match=r"^handout.steps.json is not a ledger of handout.py's steps "
                                                 r"\(Expecting value: line 1 column 28 \(char 27\)\); delete it"):
        sequence(monkeypatch)
    assert Path(handout_ledger.LEDGER_NAME).read_text(encoding="utf-8") == '{"src/run.py": {"command": '


def test_run_step_reports_a_failure_and_passes_sigterm_on_to_the_step():
    with pytest.raises(handout_step.StepStopped) as failed:
        handout_step.run_step(["-c", "import sys; print('half done'); sys.exit(3)"])
    assert (failed.value.signum, failed.value.returncode, failed.value.output) == (0, 3, "half done\n")
    assert handout_step.run_step(["-c", "import sys; sys.exit(3)"], check=False)[2] == 3
    # SIGTERM to handout.py alone (here: this process) reaches the step, which ends by it at once,
    # and the steps after it do not start
    with handout_step.stop_signals:
        with pytest.raises(handout_step.StepStopped) as stopped:
            handout_step.run_step(["-c", "import os, signal, time; print('started', flush=True); "
                                    "os.kill(os.getppid(), signal.SIGTERM); time.sleep(60)"])
        assert (stopped.value.signum, stopped.value.returncode, stopped.value.output) == (
            signal.SIGTERM, -signal.SIGTERM, "started\n")
        with pytest.raises(handout_step.StepStopped) as not_started:
            handout_step.run_step(["-c", "raise SystemExit('this step should not start')"])
        assert (not_started.value.signum, not_started.value.returncode) == (signal.SIGTERM, None)


# A recipe that makes the whole sequence quick on a CPU: a model of 1 layer, one epoch of each
# finetuning, and three pretraining epochs that keep a checkpoint after each, to be stopped in.
TINY_RECIPE = {
    "model": ["--n_layer", "1", "--n_head", "2", "--n_embd", "16"],
    "pretrain": ["--max_epochs", "3", "--batch_size", "512", "--checkpoint_every", "0"],
    "finetune": ["--max_epochs", "1"],
    "finetune from pretrained": ["--max_epochs", "1"],
}


def start_handout(work, log):
    """`python handout.py --length cpu` with TINY_RECIPE, in work; its stdout and stderr go to log.out, log.err."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT)!r}); import handout; "
              f"handout.CPU_RECIPE = {TINY_RECIPE!r}; handout.main(['--length', 'cpu'])")
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:
        # a process group of its own, as a shell gives a job, so that cleaning up reaches its steps too
        return subprocess.Popen([sys.executable, "-c", script], cwd=work, stdout=out, stderr=err,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, process_group=0)


def end(process):
    """End process and its steps (its process group), if it still runs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def finish(process, timeout):
    """process's exit status; should it not end in time, end it and fail."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        end(process)
        pytest.fail(f"handout.py was still running after {timeout} s")


def test_a_run_stopped_for_real_goes_on_where_it_stopped(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in ["wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"]:
        (work / name).symlink_to(real_data_path(name))
    for name in ["src", "london_baseline.py"]:
        (work / name).symlink_to(ROOT / name)
    checkpoint = work / "vanilla.pretrain.params.checkpoint"

    first = start_handout(work, tmp_path / "first")
    deadline = time.monotonic() + 300
    while not checkpoint.exists():  # kept after the first epoch: the trainer is in the second now
        if first.poll() is not None or time.monotonic() > deadline:
            end(first)
            pytest.fail(f"no checkpoint came; handout.py's stderr:\n{(tmp_path / 'first.err').read_text()}")
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # to handout.py alone: it passes it on
    assert finish(first, 120) == 128 + signal.SIGTERM
    assert (tmp_path / "first.err").read_text().endswith(
        "\nhandout.py: stopped by SIGTERM. The steps that finished are recorded in handout.steps.json, and a "
        "stopped training step keeps its checkpoint: run `python handout.py --length cpu` again to skip the first "
        "and resume the second.\n")
    records = json.loads((work / handout_ledger.LEDGER_NAME).read_text(encoding="utf-8"))
    assert [records[key]["finished"] for key in records] == [True, True, True, False]
    assert checkpoint.exists()

    second = start_handout(work, tmp_path / "second")
    assert finish(second, 600) == 0, (tmp_path / "second.err").read_text()
    log = (tmp_path / "second.out").read_text()
    steps = handout.handout_steps()
    for _, arguments, training in steps[:3]:
        command = shlex.join(arguments + handout.recipe_flags(TINY_RECIPE, training))
        assert f"$ python {command}\n(skipped: done before, in " in log
    pretrain = shlex.join(steps[3][1] + handout.recipe_flags(TINY_RECIPE, "pretrain"))
    assert f"$ python {pretrain} --resume\n" in log
    assert log.count("(skipped: done before") == 3 and log.count(" --resume\n") == 1
    assert not checkpoint.exists()

    # every step once: numbered in order, and as many in each epoch, the ones before the stop included
    metrics = [json.loads(line) for line in (work / "vanilla.pretrain.params.metrics.jsonl").open()]
    assert [record["step"] for record in metrics] == list(range(1, len(metrics) + 1))
    epochs = [record["epoch"] for record in metrics]
    assert epochs.count(1) > 0 and epochs == sorted([1, 2, 3] * epochs.count(1))

    table = log[log.index("\nDev accuracy (%) of the CPU recipe"):]
    for name in HANDOUT_ROWS:  # each model's accuracy, and again with the first character given
        numbers = r"\d+\.\d" if name == "London baseline" else r"\d+\.\d  +\d+\.\d"
        assert re.search(rf"^{re.escape(name)}  +{numbers}  ", table, re.MULTILINE), table
    assert f"\n{handout_report.FIRST_CHARACTER_NOTE}\n" in table
    results = (work / "RESULTS.md").read_text(encoding="utf-8")
    assert "| London baseline | 5.0 |  | 5.0 | 5.0 |" in results
    # the command names the recipe asked for
    assert results.split("\n")[2].startswith("Generated by `python handout.py --length cpu` on ")


def test_the_code_hash_follows_the_steps_programs_and_what_they_import_and_nothing_else(tmp_path):
    files = {
        "src/run.py": "import math\nimport model\n",
        "src/model.py": "import torch\n\ndef build():\n    from dropout import mask  # imported late, still run\n",
        "src/dropout.py": "from utils.text import mask\n",
        "src/utils.py": "width = 128\n",
        "src/scoring.py": "score = 1\n",
        "london_baseline.py": "from scoring import score\n",
        "src/analyze.py": "import model\n",  # no step runs it
        "src/handout_report.py": "import run\n",  # handout.py's own
        "README.md": "# notes\n",
    }
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert [path.relative_to(tmp_path).as_posix() for path in handout_ledger.steps_code(tmp_path)] == [
        "london_baseline.py", "src/dropout.py", "src/model.py", "src/run.py", "src/scoring.py", "src/utils.py"]
    first = handout_ledger.code_hash(tmp_path)
    for path, text in [("src/analyze.py", "import model\nbins = 10\n"), ("src/handout_report.py", "# the table\n"),
                       ("README.md", "# notes, edited\n"), ("handout.py", "# the sequence\n"), ("src/new.py", "")]:
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert handout_ledger.code_hash(tmp_path) == first
    hashes = {first}
    for path, text in [("src/utils.py", "width = 256\n"), ("src/scoring.py", "score = 2\n"),
                       ("src/run.py", "import math\nimport model\nimport new\n"), ("src/new.py", "x = 1\n"),
                       ("src/model.py", "this is not Python\n"), ("london_baseline.py", "print(1)\n")]:
        (tmp_path / path).write_text(text, encoding="utf-8")
        hashes.add(handout_ledger.code_hash(tmp_path))
    assert len(hashes) == 7
    # code that cannot be parsed counts by its text; what only it imported no longer counts
    assert [path.relative_to(tmp_path).as_posix() for path in handout_ledger.steps_code(tmp_path)] == [
        "london_baseline.py", "src/model.py", "src/new.py", "src/run.py"]


def test_steps_made_by_other_code_are_kept_marked_and_redone_only_when_asked(workspace, monkeypatch):
    monkeypatch.setattr(handout_ledger, "CODE", "yesterday")
    first, _ = sequence(monkeypatch)
    monkeypatch.setattr(handout_ledger, "CODE", "today")
    again, (results, _, _) = sequence(monkeypatch)
    assert again == [] and results == {name: 2.0 for name in HANDOUT_ROWS}  # kept: nothing runs by itself
    assert handout_ledger.made_by_other_code(ledger(), handout.handout_steps()) == set(handout_commands(range(12)))
    header, rows = handout_report.accuracy_table([results], [{}], {"vanilla, no pretraining"})
    assert [row[1] for row in rows] == ["2.0", "2.0 *", "2.0", "2.0"]
    handout_ledger.forget_other_code(Path("."), handout.handout_steps())
    redone, _ = sequence(monkeypatch)
    assert redone == first and handout_ledger.made_by_other_code(ledger(), handout.handout_steps()) == set()


def test_a_step_of_other_code_marks_the_steps_that_read_its_outputs(workspace, monkeypatch):
    sequence(monkeypatch)
    records = ledger()
    key = handout_commands([3])[0]  # the vanilla pretraining
    assert key.startswith(PRETRAIN)
    del records[key]["code"]  # as a record from before the ledger kept the code
    Path(handout_ledger.LEDGER_NAME).write_text(json.dumps(records), encoding="utf-8")
    assert handout_ledger.made_by_other_code(ledger(), handout.handout_steps()) == set(handout_commands(range(3, 7)))
