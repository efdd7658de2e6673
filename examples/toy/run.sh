#!/usr/bin/env bash
# The embedded pipeline on CPU (what `make demo` runs):
#   balkd-synth -> balkd-prepare -> balkd-train-teachers -> three students on the same update budget
#   (HL, HL-balanced, Ours) -> balkd-eval-lm -> balkd-probe -> balkd-report -> balkd-export (Ours)
# Settings come from the environment (defaults below); OUT is wiped and rebuilt each run.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${OUT:-$REPO/outputs/toy}"
SEED="${SEED:-1}"
PRESET="${PRESET:-shared}"
LOW="${LOW:-tr eu}"
HIGH="${HIGH:-es}"
SINGLE="${SINGLE:-de}"
TEACHER_UPDATES="${TEACHER_UPDATES:-500}"
STUDENT_UPDATES="${STUDENT_UPDATES:-500}"
TEACHER_VALID_EVERY="${TEACHER_VALID_EVERY:-25}"  # teachers validate (and keep their best) every N updates
VOCAB="${VOCAB:-2000}"
HIGH_SIZE="${HIGH_SIZE:-20000}"       # raw sentences per high-resource language
LOW_SIZE="${LOW_SIZE:-500}"           # ... per low-resource language
PROBE_TRAIN="${PROBE_TRAIN:-1000}"    # POS/NER probe training sentences per language
PROBE_TEST="${PROBE_TEST:-500}"
EVAL_LINES="${EVAL_LINES:-100}"       # valid and test lines per language
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

# one model size for teachers and students (the method's setting: same size)
MODEL=(--arch roberta_base --encoder-layers 2 --encoder-embed-dim 96 --encoder-ffn-embed-dim 192
       --encoder-attention-heads 4 --max-positions 64 --dropout 0.1)
COMMON=(--tokens-per-sample 64 --batch-size 32 --required-batch-size-multiple 1 --optimizer adam
        --adam-betas "(0.9,0.98)" --weight-decay 0.01 --lr 0.002 --lr-scheduler polynomial_decay
        --cpu --seed "$SEED" --num-workers 0 --log-format simple --log-interval 25 --no-epoch-checkpoints)
# Teachers keep their best checkpoint on their language's valid split: a low-resource teacher sees its
# few hundred sentences dozens of times and overfits, and the student would inherit that (RESULTS.md).
TEACHER_VALIDATION=(--validate-interval-updates "$TEACHER_VALID_EVERY" --save-interval-updates "$TEACHER_VALID_EVERY"
                    --keep-interval-updates 1 --validate-interval 1000000 --save-interval 1000000)
schedule() { echo --warmup-updates $(( $1 / 10 )) --total-num-update "$1" --max-update "$1"; }

step() { printf '\n==> %s\n' "$*"; }
SECONDS=0
rm -rf "$OUT" && mkdir -p "$OUT"

step "1/7 synthetic benchmark ($PRESET preset) -> $OUT/synth"
balkd-synth --out "$OUT/synth" --preset "$PRESET" --seed "$SEED" --high-size "$HIGH_SIZE" --low-size "$LOW_SIZE" \
  --probe-train "$PROBE_TRAIN" --probe-test "$PROBE_TEST" --quiet

step "2/7 one SentencePiece vocabulary + binarized data -> $OUT/data"
balkd-prepare --raw-dir "$OUT/synth/raw" --out "$OUT/data" --vocab-size "$VOCAB" \
  --valid-lines "$EVAL_LINES" --test-lines "$EVAL_LINES" --seed "$SEED" --quiet

step "3/7 monolingual teachers on all of each language's data -> $OUT/teachers"
balkd-train-teachers "$OUT/data" --save-dir "$OUT/teachers" --use-checkpoint best -- "${MODEL[@]}" "${COMMON[@]}" \
  $(schedule "$TEACHER_UPDATES") "${TEACHER_VALIDATION[@]}"

# progress of a fairseq-train log on stdin: one short line every 100 updates
progress() {
  awk -v total="$1" '/\| train_inner \|/ && match($0, /num_updates=[0-9]+/) {
    n = substr($0, RSTART + 12, RLENGTH - 12); if (n % 100) next
    match($0, / loss=[0-9.]+/); printf "  update %d/%d  loss %s\n", n, total, substr($0, RSTART + 6, RLENGTH - 6); fflush() }'
}
train_student() {  # name, then task/criterion flags
  local name=$1; shift
  local log="$OUT/checkpoints/$name.log"
  step "student $name -> $OUT/checkpoints/$name (TensorBoard: $OUT/tensorboard/$name, log: $log)"
  balkd-train "$OUT/data" --task balanced_distill "$@" "${MODEL[@]}" "${COMMON[@]}" $(schedule "$STUDENT_UPDATES") \
    --save-dir "$OUT/checkpoints/$name" --tensorboard-logdir "$OUT/tensorboard/$name" 2>&1 \
    | tee "$log" | progress "$STUDENT_UPDATES" || { tail -n 20 "$log"; exit 1; }
  grep -E "\| valid \|" "$log" | tail -n 1 | cut -c1-160
}
mkdir -p "$OUT/checkpoints"
step "4/7 three students, $STUDENT_UPDATES updates each"
train_student HL --balance none --criterion masked_lm
train_student HL-balanced --balance subsample --criterion masked_lm
train_student Ours --balance subsample --criterion multi_teacher_distill --teachers "$OUT/teachers/teachers.json"

MODELS=()
for name in HL HL-balanced Ours; do MODELS+=(--checkpoint "$name=$OUT/checkpoints/$name/checkpoint_last.pt"); done
LANGS=$(python -c "import json,sys; print(','.join(json.load(open(sys.argv[1]))['languages']))" "$OUT/synth/languages.json")

step "5/7 masked-LM MRR per language (identical masks for every model)"
balkd-eval-lm "${MODELS[@]}" --data "$OUT/data" --languages "$LANGS" --split test --tokens-per-sample 64 \
  --seed "$SEED" --output-dir "$OUT/results" --cpu

step "6/7 POS and NER probes, in-language and zero-shot"
for name in HL HL-balanced Ours; do
  balkd-probe --checkpoint "$name=$OUT/checkpoints/$name/checkpoint_last.pt" --data "$OUT/data" --languages "$LANGS" \
    --probe-dir "$OUT/synth" --seed "$SEED" --output-dir "$OUT/results" --cpu
done

step "7/7 report"
balkd-report --model "HL=$OUT/results/HL" --model "HL-balanced=$OUT/results/HL-balanced" --model "Ours=$OUT/results/Ours" \
  --low $LOW --high $HIGH --single $SINGLE --output-dir "$OUT/report"
step "export Ours -> $OUT/export (fairseq and Hugging Face folders, model card) and one fill-mask query each"
python -m balkd_fairseq.cli.export "$OUT/checkpoints/Ours/checkpoint_last.pt" --data "$OUT/data" \
  --results "$OUT/results/Ours" --out "$OUT/export"  # = balkd-export
# the first six words of a sentence, the sixth masked (short enough for the toy model's 64 positions)
QUERY=$(python -c "import sys; w = open(sys.argv[1], encoding='utf-8').readline().split(); print(' '.join(w[:5] + ['<mask>']))" \
  "$OUT/synth/raw/$SINGLE.txt")
echo "  query:       $QUERY"
# each in a process of its own, neither importing balkd_fairseq (see README "Using the student elsewhere")
python - "$OUT/export/fairseq" "$QUERY" <<'PY'
import logging, sys
logging.disable(logging.INFO)
from fairseq.models.roberta import RobertaModel
folder, query = sys.argv[1:]
model = RobertaModel.from_pretrained(folder, "model.pt", bpe="sentencepiece", sentencepiece_model=f"{folder}/spm.model")
print("  fairseq:     " + model.eval().fill_mask(query, topk=1)[0][0])
PY
HF_HUB_OFFLINE=1 python - "$OUT/export/hf" "$QUERY" <<'PY'
import sys
from transformers import pipeline
folder, query = sys.argv[1:]
print("  transformers: " + pipeline("fill-mask", model=folder)(query, top_k=1)[0]["sequence"])
PY

cat <<DONE

Done in ${SECONDS}s.
  table:       $OUT/report/report.md (and report.csv)
  plot:        $OUT/report/report.png
  checkpoints: $OUT/checkpoints/{HL,HL-balanced,Ours}/checkpoint_last.pt, teachers in $OUT/teachers
  TensorBoard: tensorboard --logdir $OUT/tensorboard
  exported:    $OUT/export/{fairseq,hf,README.md} (balkd-export)
DONE
