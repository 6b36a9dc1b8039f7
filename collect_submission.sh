#!/usr/bin/env bash
# Packs the code and the nine outputs the handout asks for into assignment5.zip, ready to
# upload. Missing outputs are named and the rest is still packed, so a partial run can be
# checked; the exit status is 1 until all nine are there.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")"

outputs=(
    vanilla.model.params
    vanilla.finetune.params
    synthesizer.finetune.params
    vanilla.nopretrain.dev.predictions
    vanilla.nopretrain.test.predictions
    vanilla.pretrain.dev.predictions
    vanilla.pretrain.test.predictions
    synthesizer.pretrain.dev.predictions
    synthesizer.pretrain.test.predictions
)

# an archive from an earlier run could still hold files that no longer exist
rm -f assignment5.zip

missing=0
shopt -s nullglob
files=(src/*.py)
if ((${#files[@]} == 0)); then
    echo "missing: src/*.py (no code found in $PWD/src)"
    missing=1
fi
for output in "${outputs[@]}"; do
    if [[ -f $output ]]; then
        files+=("$output")
    else
        echo "missing: $output"
        missing=$((missing + 1))
    fi
done

if ((${#files[@]} == 0)); then
    echo "Nothing to pack: assignment5.zip was not made." >&2
    exit 1
fi
if command -v zip > /dev/null; then
    zip -q assignment5.zip "${files[@]}"
else
    # python3 -m zipfile -c would store src/model.py as model.py, so keep the paths ourselves
    python3 -c 'import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sys.argv[2:]:
        archive.write(path)' assignment5.zip "${files[@]}"
fi
echo "Wrote $PWD/assignment5.zip with ${#files[@]} files."

if ((missing > 0)); then
    echo "$missing required file(s) missing: make the outputs with the commands in the handout, then run this again." >&2
    exit 1
fi
