#!/usr/bin/env bash
# What a session with a CUDA GPU verifies, in one command that goes on where it stopped when
# run again (a GPU is lent in commands of at most 10 minutes):
#
#   1. the CUDA tests (pytest -m cuda: bf16 against fp32, cut against padded batches, trainer
#      steps against the CPU's, a loop that waits on the GPU only to read its losses,
#      cached decoding against sample()),
#   2. bench/bench.py on the GPU,
#   3. python3 handout.py --length full --seeds 0 1 2 --variants vanilla rope synthesizer
#      perceiver (every year's variant; vanilla and rope first, the comparison that matters
#      most), which skips what it finished, resumes an interrupted training from its
#      checkpoint, and ends with RESULTS.md,
#
# then writes to OUT_DIR the logs, RESULTS.md, and gpu_summary.txt: the card, and the seconds
# of each pretraining, per epoch and whole, from the metrics logs (what BENCHMARKS.md records).
#
#   bash bench/gpu_check.sh DATA_DIR OUT_DIR [SECONDS]
#
# DATA_DIR holds the four data files (get_data.py checks their sums). SECONDS (default 540)
# bounds this call: the stage running at the limit is stopped, the handout with its
# checkpoint kept, and the next call goes on from there. A finished stage leaves
# gpu_check/STAGE.done and is not run again. It needs nothing but a python3 with PyTorch,
# numpy, tqdm and pytest (matplotlib for the figures): no virtualenv, no network.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
    echo "usage: bash bench/gpu_check.sh DATA_DIR OUT_DIR [SECONDS]" >&2
    exit 2
fi
data_dir=$1
out_dir=$2
deadline=$((SECONDS + ${3:-540}))
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p gpu_check "$out_dir"

"$python" get_data.py --from "$data_dir" || exit 2
"$python" -c "import torch; assert torch.cuda.is_available(), 'PyTorch sees no CUDA GPU here'" || exit 2

# stage NAME COMMAND...: run COMMAND once, logging to gpu_check/NAME.log, within the time left.
# A stage that ends, its tests passing or not, is done (its log holds the verdict); one stopped
# at the time limit runs again next time. The handout is never marked done: run again, it
# skips what it finished by itself, and a step that failed is tried again.
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
    timeout -s TERM -k 60 "$left" "$@" 2>&1 | tee -a "gpu_check/$name.log"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit status $status" | tee -a "gpu_check/$name.log"
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "== $name: stopped at the time limit; run the same command again to go on"
        return 1
    fi
    [ "$name" = handout ] && return "$status"
    touch "gpu_check/$name.done"
}

stage cuda_tests "$python" -m pytest -q -m cuda tests &&
    stage bench "$python" bench/bench.py --steps 5 --epochs 1 &&
    stage handout "$python" handout.py --length full --seeds 0 1 2 --variants vanilla rope synthesizer perceiver
finished=$?

"$python" - >"$out_dir/gpu_summary.txt" <<'EOF'
import glob, json, sys, torch
sys.path.insert(0, "src")
from params import metrics_path
print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}")
for log in sorted(glob.glob(metrics_path("*.pretrain.params")) + glob.glob(metrics_path("runs/*/*.pretrain.params"))):
    records = [json.loads(line) for line in open(log)]
    if not records:
        continue
    epochs = records[-1]["epoch"]
    seconds = records[-1]["wall_time"]
    print(f"{log}: {epochs} epochs in {seconds:.1f} s, {seconds / epochs:.3f} s per epoch, "
          f"last loss {records[-1]['loss']:.3f}")
EOF
for file in gpu_check/cuda_tests.log gpu_check/bench.log gpu_check/handout.log; do
    [ -e "$file" ] && cp "$file" "$out_dir/"
done
[ "$finished" -eq 0 ] && cp RESULTS.md "$out_dir/"  # before the handout ends, it is an earlier run's
cat "$out_dir/gpu_summary.txt"
if [ "$finished" -ne 0 ]; then
    echo "gpu_check: not finished; run the same command again to go on"
fi
exit "$finished"
