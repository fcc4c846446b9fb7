#!/bin/sh
# A trainer program in plain sh for the exec-trainer tests: `sh test_exec_trainer_fake.sh MODE`.
# It returns the global model unchanged (cp), or goes wrong in one of the ways a trainer can.
set -eu
mode="$1"
metrics() { printf '{"num_examples": %s, "metrics": {"train_loss": 1.5}}\n' "$1" > "$FEDERA_METRICS"; }
case "$mode" in
  ok) echo "shell trainer, round $FEDERA_ROUND, task $FEDERA_TASK"
      cp "$FEDERA_INPUT_MODEL" "$FEDERA_OUTPUT_MODEL"; metrics 7 ;;
  args) [ "$2" = "$FEDERA_INPUT_MODEL" ] && [ "$3" = "$FEDERA_OUTPUT_MODEL" ] || { echo "placeholders: '$2' '$3'" >&2; exit 5; }
      cp "$2" "$3"; metrics 9 ;;
  fail) echo "shell trainer: cannot read /data/agency.csv" >&2; exit 1 ;;
  hang) sleep 3600 ;;
  killed) kill -9 $$ ;;
  no_model) metrics 7 ;;
  truncated) head -c 20 "$FEDERA_INPUT_MODEL" > "$FEDERA_OUTPUT_MODEL"; metrics 7 ;;
  bad_metrics) cp "$FEDERA_INPUT_MODEL" "$FEDERA_OUTPUT_MODEL"; echo "num_examples=7" > "$FEDERA_METRICS" ;;
  symlink) ln -s "$FEDERA_INPUT_MODEL" "$FEDERA_OUTPUT_MODEL"; metrics 7 ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
