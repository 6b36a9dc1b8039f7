"""The main job's own logic: where outputs go per seed, how accuracies are read and summarised."""

from pathlib import Path

import handout


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
    rows = [row for row, _, _ in handout.handout_steps() if row]
    assert sorted(rows) == sorted(handout.REFERENCE)


def test_further_seeds_keep_their_outputs_in_their_own_folder():
    arguments = ["src/run.py", "finetune", "vanilla", "wiki.txt", "--reading_params_path", "a.params",
                 "--writing_params_path", "b.params", "--finetune_corpus_path", "birth_places_train.tsv"]
    assert handout.in_folder(arguments, Path(".")) == arguments
    moved = handout.in_folder(arguments, Path("runs/seed-1"))
    assert moved == ["src/run.py", "finetune", "vanilla", "wiki.txt", "--reading_params_path", "runs/seed-1/a.params",
                     "--writing_params_path", "runs/seed-1/b.params", "--finetune_corpus_path",
                     "birth_places_train.tsv"]


def test_accuracy_is_read_from_the_printed_line():
    assert handout.accuracy("data has 5 characters\nCorrect: 49.0 out of 500.0: 9.8%\n") == 9.8
    assert handout.accuracy("Predictions written to x; no targets provided\n") is None


def test_accuracies_over_seeds_are_mean_and_sample_standard_deviation():
    assert handout.summary([5.0]) == "5.0"
    assert handout.summary([1.0, 2.0, 3.0]) == "2.0 ± 1.0"
    assert handout.summary([None]) == "?"
    header, rows = handout.accuracy_table([{name: 10.0 for name in handout.REFERENCE},
                                           {name: 20.0 for name in handout.REFERENCE}])
    assert rows[0] == ("London baseline", "15.0 ± 7.1", "5.0", "5.0")
    assert handout.markdown_table(("a", "b"), [("1", "2")]) == "| a | b |\n| --- | --- |\n| 1 | 2 |"


def test_the_text_table_lines_up():
    text = handout.text_table(("run", "x"), [("London baseline", "5.0"), ("v", "10.0")])
    lines = text.splitlines()
    assert lines[0] == "run              x"
    assert lines[2] == "London baseline  5.0"


def recorded_sequence(monkeypatch, seed, recipe):
    commands = []

    def run_step(arguments, check=True):
        commands.append(arguments)
        return "Correct: 10.0 out of 500.0: 2.0%\n", 1.5, 0

    monkeypatch.setattr(handout, "run_step", run_step)
    results, seconds = handout.run_sequence(seed, Path("."), recipe, "auto")
    return commands, results, seconds


def test_the_full_run_is_the_handouts_commands_unchanged(monkeypatch):
    commands, results, seconds = recorded_sequence(monkeypatch, 0, {})
    assert commands == [arguments for _, arguments, _ in handout.handout_steps()]
    assert results == {name: 2.0 for name in handout.REFERENCE} and seconds == 1.5 * len(commands)


def test_a_recipe_adds_its_flags_to_each_kind_of_step(monkeypatch):
    recipe = {"model": ["--n_layer", "2"], "pretrain": ["--max_epochs", "7"], "finetune": ["--max_epochs", "5"],
              "finetune from pretrained": ["--max_epochs", "3"]}
    commands, _, _ = recorded_sequence(monkeypatch, 4, recipe)
    for (_, arguments, training), command in zip(handout.handout_steps(), commands):
        if arguments[0] != "src/run.py":
            assert command == arguments  # the London baseline builds no model
        elif training is None:
            assert command == arguments + ["--n_layer", "2"]  # evaluate: the model's size only
        else:
            assert command == arguments + ["--n_layer", "2"] + recipe[training] + ["--seed", "4"]


def test_the_recipe_is_described_by_its_flags():
    assert handout.describe({}).startswith("the handout's full run")
    assert handout.describe({"model": ["--n_layer", "2"], "pretrain": ["--max_epochs", "7"]}) == (
        "the CPU recipe, the handout's commands with these flags added: every command `--n_layer 2`; "
        "pretrain `--max_epochs 7`")
    for flags in handout.CPU_RECIPE.values():
        assert " ".join(flags) in handout.describe(handout.CPU_RECIPE)


def test_run_py_accepts_every_command_of_the_cpu_recipe():
    import run
    from params import build_model

    for _, arguments, training in handout.handout_steps():
        if arguments[0] != "src/run.py":
            continue
        args = run.parse_args(arguments[1:] + handout.recipe_flags(handout.CPU_RECIPE, training))
        assert (args.n_layer, args.n_head, args.n_embd) == (2, 8, 128)
        if training == "pretrain":
            assert (args.max_epochs, args.batch_size, args.learning_rate, args.dropout, args.cosine_epochs,
                    args.num_workers) == (60, 8, 1e-3, 0.0, 60.0, 0)
        elif training is not None:  # the handout's finetunings, without worker processes
            assert (args.max_epochs, args.learning_rate, args.dropout, args.num_workers) == (None, None, None, 0)
    model = build_model(256, 128, "vanilla", args)
    d, vocabulary, block = 128, 256, 128
    per_layer = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d  # attention, MLP, 2 LayerNorms
    embeddings_and_head = vocabulary * d + block * d + 2 * d + d * vocabulary
    assert sum(p.numel() for p in model.parameters()) == 2 * per_layer + embeddings_and_head


def test_results_md_names_the_recipe_that_ran(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header, rows = handout.accuracy_table([{name: 1.0 for name in handout.REFERENCE}])
    for recipe, opening in [(handout.CPU_RECIPE, "**The CPU recipe, the handout's commands with these flags added: "
                                                 "every command `--n_layer 2 --n_head 8 --n_embd 128`;"),
                            ({}, "The handout's full run (650 pretraining epochs per variant")]:
        handout.write_results(header, rows, [0], recipe, 22.1, "a CPU", [], "vanilla", "report")
        assert Path("RESULTS.md").read_text(encoding="utf-8").split("\n")[4].startswith(opening)
