#!/usr/bin/env bash
# What `make demo` runs: the embedded pipeline on CPU, implemented in pipeline.py (see its --help):
#   balkd-synth -> balkd-prepare -> balkd-train-teachers -> three students on the same update budget
#   (HL, HL-balanced, Ours) -> balkd-eval-lm -> balkd-probe -> balkd-report -> balkd-export (Ours)
# Settings come from the environment (OUT, SEED, PRESET, TEACHER_UPDATES, STUDENT_UPDATES, HIGH_SIZE, LOW_SIZE,
# PROBE_TRAIN, PROBE_TEST, EVAL_LINES, VOCAB, ...; defaults in configurations.py); OUT is wiped and rebuilt each run.
set -euo pipefail
exec python "$(cd "$(dirname "$0")" && pwd)/pipeline.py" demo "$@"
