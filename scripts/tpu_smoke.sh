#!/usr/bin/env bash
# The first thing to run on a new TPU: 20 pretraining steps of the debug config (stopped
# at step 10 and resumed), an export, one fine-tuning epoch on the bundled NSMC sample.
# One PASS/FAIL line per step with its time; exit status 1 if any step failed.
#
#   TPU=local MODEL_DIR=gs://my-bucket/smoke scripts/tpu_smoke.sh      # a TPU VM
#   TPU=my-pod-name MODEL_DIR=gs://my-bucket/smoke scripts/tpu_smoke.sh # every host of a pod
#   scripts/tpu_smoke.sh                                               # CPU (--strategy default)
#
# Optional: WORK (scratch folder, default a new temp dir), BATCH (global batch, default 64:
# a multiple of the TPU's cores), PYTHON (default .venv/bin/python, as install_tpu.sh and test.sh make it).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
WORK="${WORK:-$(mktemp -d)}"
MODEL_DIR="${MODEL_DIR:-$WORK/model}"
BATCH="${BATCH:-64}"
if [ -n "${TPU:-}" ]; then
  DEVICE=(--tpu "$TPU")
  FT_DEVICE=(--set use_tpu=true --set "tpu_name=\"$TPU\"")
else
  DEVICE=(--strategy default)
  FT_DEVICE=()
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
mkdir -p "$WORK"
failed=0

step() {  # step NAME COMMAND...: run it, print PASS/FAIL with seconds, keep the log
  local name="$1" start ms
  shift
  start=$(date +%s%N)
  if "$@" >"$WORK/$name.log" 2>&1; then
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'PASS %-9s %4d.%d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 100))
  else
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf 'FAIL %-9s %4d.%d s  (log: %s)\n' "$name" $((ms / 1000)) $((ms % 1000 / 100)) "$WORK/$name.log"
    tail -n 20 "$WORK/$name.log" | sed 's/^/     | /'
    failed=1
  fi
}

pretrain() {
  "$PYTHON" -m electra_ko.pretrain --config configs/debug.json "${DEVICE[@]}" \
    --corpus "$WORK/corpus.txt" --data_dir "$WORK/data" --model_dir "$MODEL_DIR" \
    --set num_train_steps=20 --set "train_batch_size=$BATCH" --set iterations_per_loop=5 \
    --set save_checkpoints_steps=10 --set vocab_size=3000 --set num_unused=10 \
    --set min_frequency=1 --set num_shards=2 "$@"
}

resume() {  # the second half must continue from step 10, not start over
  pretrain && grep -q "training from step 10" "$WORK/resume.log"
}

step corpus "$PYTHON" -m electra_ko.corpus --input electra_ko/sample/korean_sample.txt \
  --output "$WORK/corpus.txt"
step pretrain pretrain --stop_at_step 10
step resume resume
step export "$PYTHON" -m electra_ko.export --model_dir "$MODEL_DIR" --format huggingface \
  --output_dir "$WORK/export"
mkdir -p "$WORK/nsmc"
cp electra_ko/sample/nsmc_train.tsv "$WORK/nsmc/ratings_train.txt"
cp electra_ko/sample/nsmc_test.tsv "$WORK/nsmc/ratings_test.txt"
step finetune "$PYTHON" -m electra_ko.finetune --task nsmc --data_dir "$WORK/nsmc" \
  --init_checkpoint "$MODEL_DIR/discriminator" --output_dir "$WORK/nsmc_run" --epochs 1 \
  --batch_size 16 --max_seq_length 64 "${FT_DEVICE[@]}"

if [ "$failed" = 0 ]; then
  echo "tpu_smoke: PASS (${TPU:+TPU $TPU, }model_dir $MODEL_DIR, logs in $WORK)"
else
  echo "tpu_smoke: FAIL (logs in $WORK)"
fi
exit "$failed"
