#!/usr/bin/env bash
# Carry the SmolVLA training run (docs/policies.md, "Training plan for the 80% target") across
# sessions: `runs/` is not kept between machines, so the last checkpoint is committed under
# training/smolvla80/ (weights, optimiser state and random state, about 18 MB) and put back here.
#   save:    after the training process was stopped, copy its last checkpoint to training/smolvla80
#   restore: before the identical train command, put training/smolvla80 back as its checkpoint
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=runs/smolvla80/policy/checkpoints
KEPT=training/smolvla80
case "${1:-}" in
save)
    [ -f "$RUN/last.json" ] || { echo "no checkpoint in $RUN" >&2; exit 1; }
    dir=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["dir"])' "$RUN/last.json")
    rm -rf "$KEPT" && mkdir -p "$KEPT"
    cp -r "$RUN/$dir" "$KEPT/" && cp "$RUN/last.json" "$KEPT/"
    echo "kept $RUN/$dir in $KEPT"
    ;;
restore)
    [ -f "$KEPT/last.json" ] || { echo "nothing kept in $KEPT: the run starts at step 0" >&2; exit 0; }
    if [ -f "$RUN/last.json" ]; then
        echo "$RUN already has a checkpoint ($(cat "$RUN/last.json")); not replaced" >&2; exit 1
    fi
    mkdir -p "$RUN" && cp -r "$KEPT"/. "$RUN/"
    echo "restored $(cat "$KEPT/last.json") into $RUN"
    ;;
*)
    echo "usage: $0 save|restore" >&2; exit 2
    ;;
esac
