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
