#!/usr/bin/env bash
# What the first session with a CUDA GPU verifies, in calls of at most 10 minutes, each going
# on where the last stopped (a GPU is lent for about 15 minutes, start-up included):
#
#   1. the CUDA tests (pytest -m cuda: bf16 against fp32, cut against padded batches, trainer
#      steps against the CPU's, a loop and a decoding that wait on the GPU only to read their
#      results, cached decoding against sample()), counted: passed, failed, skipped. With the
#      data there and a GPU, none may skip: a skip counts as a failure.
#   2. python3 handout.py --length full --seeds 0 --variants vanilla, which skips what it
#      finished and resumes an interrupted training from its checkpoint,
#   3. bench/bench.py --steps 5 --epochs 0: the in-process benchmark (each path's steps and
#      their profile, and decoding), no whole epochs in fresh processes.
#
#   bash bench/gpu_check.sh [--from PREVIOUS_OUT_DIR] DATA_DIR OUT_DIR [SECONDS]
#
# DATA_DIR holds the four data files (get_data.py checks their sums). SECONDS (default 520)
# bounds the stages of this call: the stage running at the limit is stopped (the handout
# keeping its checkpoint), and the next call goes on from there. Then, within half a minute,
# every call writes to OUT_DIR what it has so far, as at most 7 files of at most 15 MiB, 62 MiB
# in all (what one lease returns):
#
#   gpu_summary.txt  the card, the CUDA tests' counts, each training's seconds (whole, per
#                    epoch), the dev accuracies, the stages done and what is left to do
#   gpu_check.log    the end of each stage's log
#   RESULTS.md       once the handout has finished
#   run_state.tar.N  the run's state, a gzipped tar in pieces: handout.py's ledger, params files
#                    (vanilla.pretrain.params first), the checkpoint of a training stopped at the
#                    limit, metrics logs, predictions, and which stages are done (what does not
#                    fit is named in the summary, and redone)
#
# A finished stage is marked done in gpu_check/ and not run again (the handout only once it
# has finished). On the same machine a call goes on by itself; on a fresh one, give the last
# call's OUT_DIR as --from, and the run folder starts from its state (a checkout that already
# has its own, gpu_check/, keeps it). It needs nothing but a python3 with PyTorch, numpy, tqdm
# and pytest (matplotlib for the figures): no virtualenv, no network.
#
# Through the device tool, whose machine gets the checkout's ignored files only when carried:
# copy the four data files into a folder that git ignores, say gpu_data/, and run
# `bash bench/gpu_check.sh gpu_data "$OUT"` carrying gpu_data, with a 600-second limit, again
# while it says it has not finished; on a later lease, copy the last call's files into
# another such folder, say gpu_prev/, carry both, and add `--from gpu_prev`.
set -uo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash bench/gpu_check.sh [--from PREVIOUS_OUT_DIR] DATA_DIR OUT_DIR [SECONDS]"
from=
if [ "${1:-}" = --from ]; then
    from=${2:?$usage}
    shift 2
fi
if [ $# -lt 2 ]; then
    echo "$usage" >&2
    exit 2
fi
data_dir=$1
out_dir=$2
deadline=$((SECONDS + ${3:-520}))
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

"$python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null || {
    echo "gpu_check: needs a machine where PyTorch sees a CUDA GPU ($python: torch.cuda.is_available() is False," \
         "or no torch); nothing was run" >&2
    exit 2
}
if [ -n "$from" ]; then
    if [ -e gpu_check ]; then
        echo "== --from $from: not unpacked, this checkout has a state of its own (gpu_check/) and goes on from it"
    elif ! ls "$from"/run_state.tar.* >/dev/null 2>&1; then
        echo "gpu_check: $from holds no run_state.tar.N to go on from" >&2
        exit 2
    else
        cat "$from"/run_state.tar.* | tar -xz -f - || exit 2
        echo "== the run folder now holds the state of $from"
    fi
fi
mkdir -p gpu_check "$out_dir"
"$python" get_data.py --from "$data_dir" || exit 2

# stage NAME COMMAND...: run COMMAND once, logging to gpu_check/NAME.log, within the time left.
# A stage that ends, its tests passing or not, is done (the summary gives the verdict); one
# stopped at the time limit runs again next time. The handout is done only once it succeeds:
# run again, it skips what it finished by itself, and a step that failed is tried again.
stage() {
    local name=$1
    shift
    [ -e "gpu_check/$name.done" ] && { echo "== $name: done in an earlier call (gpu_check/$name.log)"; return 0; }
    local left=$((deadline - SECONDS))
    if [ "$left" -le 10 ]; then
        echo "== $name: no time left in this call; run the same command again to go on"
        return 1
    fi
    echo "== $name ($left s left): $*"
    timeout -s TERM -k 20 "$left" "$@" 2>&1 | tee -a "gpu_check/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit status $status" | tee -a "gpu_check/$name.log"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "== $name: stopped at the time limit; run the same command again to go on"
        return 1
    fi
    [ "$name" = handout ] && [ "$status" -ne 0 ] && return "$status"
    touch "gpu_check/$name.done"
}

stage cuda_tests "$python" -m pytest -q -rs -m cuda --junitxml=gpu_check/cuda_tests.xml tests &&
    stage handout "$python" handout.py --length full --seeds 0 --variants vanilla &&
    stage bench "$python" bench/bench.py --steps 5 --epochs 0
finished=$?

# The summary and the state, whatever happened above
"$python" - "$out_dir" "$finished" <<'EOF'
import glob, json, re, statistics, sys, tarfile, xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

out, finished = Path(sys.argv[1]), sys.argv[2] == "0"
PIECE = 15 * 2**20  # a lease returns files of at most 16 MiB,
STATE = 60 * 2**20  # and 64 MiB in all: the state (before compression), then the summary and the logs
LOG_TAIL = 500_000  # characters kept of each stage's log (tqdm's progress fills the handout's)
lines = [f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}"]

tests_passed = True
if Path("gpu_check/cuda_tests.xml").exists():
    counts = {key: 0 for key in ("tests", "failures", "errors", "skipped")}
    for suite in ElementTree.parse("gpu_check/cuda_tests.xml").getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failed = counts["failures"] + counts["errors"]
    tests_passed = failed == 0 and counts["skipped"] == 0
    lines.append(f"CUDA tests: {passed} passed, {failed} failed, {counts['skipped']} skipped"
                 + ("" if tests_passed else " (FAILED: on a GPU with the data none may fail or skip)"))
else:
    lines.append("CUDA tests: no result yet")

sys.path.insert(0, "src")
from params import metrics_path
for log in sorted(glob.glob(metrics_path("*.params"))):
    records = [json.loads(line) for line in open(log)]
    if not records:
        continue
    ends = {}  # epoch: wall time at its last step (read at the epoch's end, so the step had finished)
    for record in records:
        ends[record["epoch"]] = record["wall_time"]
    times = list(ends.values())
    per_epoch = [b - a for a, b in zip([0.0] + times, times)]
    rest = f", median of the later ones {statistics.median(per_epoch[1:]):.3f} s" if len(per_epoch) > 1 else ""
    lines.append(f"{log}: {len(ends)} epochs in {times[-1]:.1f} s, {times[-1] / len(ends):.3f} s per epoch (the "
                 f"first {per_epoch[0]:.3f} s{rest}), last loss {records[-1]['loss']:.3f}")

if Path("handout.steps.json").exists():
    for record in json.loads(Path("handout.steps.json").read_text()).values():
        accuracy = re.search(r"^Correct: .*$", record["stdout"], re.MULTILINE)
        if "birth_dev.tsv" in record["command"] and accuracy:
            command = record["command"]
            made = command[command.index("--outputs_path") + 1] if "--outputs_path" in command else command[0]
            lines.append(f"dev accuracy, {made}: {accuracy.group(0)}")

lines.append("stages done: " + (", ".join(sorted(p.stem for p in Path("gpu_check").glob("*.done"))) or "none"))
failed_stages = []
for name in ("cuda_tests", "handout", "bench"):
    path = Path(f"gpu_check/{name}.log")
    ends = re.findall(rf"== {name}: exit status (\d+)$", path.read_text(errors="replace"), re.MULTILINE) \
        if path.exists() else []
    if ends:
        lines.append(f"{name}: exit status {ends[-1]} in its last run")
        failed_stages += [name] * (ends[-1] != "0")

# the state, the small files first, then the pretraining's params and checkpoint, then the
# rest: what does not fit is left out, and redone by the next call that needs it
small = sorted(glob.glob("gpu_check/*.done") + glob.glob("gpu_check/*.xml") + glob.glob("gpu_check/*.log")
               + ["handout.steps.json"] * Path("handout.steps.json").exists()
               + glob.glob("*.metrics.jsonl") + glob.glob("*.predictions"))
large = sorted(glob.glob("*.params") + glob.glob("*.checkpoint"),
               key=lambda name: (".pretrain." not in name, name.endswith(".checkpoint"), name))
packed, left_out, size = [], [], 0
for name in small + large:
    file_size = Path(name).stat().st_size
    if size + file_size + 10 * 2**10 > STATE:  # a file's tar header and padding are under 10 KiB
        left_out.append(name)
    else:
        packed.append(name)
        size += file_size
for old in out.glob("run_state.tar.*"):
    old.unlink()
with open(out / "run_state.tar", "wb") as f, tarfile.open(fileobj=f, mode="w:gz", compresslevel=1) as archive:
    for name in packed:
        archive.add(name)
whole = (out / "run_state.tar").read_bytes()
(out / "run_state.tar").unlink()
for number, begin in enumerate(range(0, len(whole), PIECE)):
    (out / f"run_state.tar.{number}").write_bytes(whole[begin:begin + PIECE])
lines.append(f"state: {len(packed)} files in run_state.tar.* ({len(whole) / 2**20:.1f} MiB, gzipped tar)"
             + (f"; left out, to be redone: {', '.join(left_out)}" if left_out else ""))

with open(out / "gpu_check.log", "w", encoding="utf-8") as log:
    for name in ("cuda_tests", "handout", "bench"):
        path = Path(f"gpu_check/{name}.log")
        if path.exists():
            log.write(f"==== gpu_check/{name}.log (its last {LOG_TAIL} characters)\n")
            log.write(path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL:] + "\n")
if finished:
    (out / "RESULTS.md").write_bytes(Path("RESULTS.md").read_bytes())  # before the end, it is an earlier run's
all_passed = tests_passed and not failed_stages
if not finished:
    lines.append("gpu_check: not finished; run the same command again (on a fresh machine, with --from OUT_DIR)")
else:
    lines.append("gpu_check: finished" + ("" if all_passed else ", with failures: see above and gpu_check.log"))
(out / "gpu_summary.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
print("\n".join(lines))
sys.exit(0 if finished and all_passed else 1)
EOF
