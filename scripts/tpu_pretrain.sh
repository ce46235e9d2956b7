#!/usr/bin/env bash
# Pretrain ELECTRA on the TPU made by scripts/tpu_create.sh, data and model in GCS.
# Usage: BUCKET=my-bucket scripts/tpu_pretrain.sh [CONFIG] [extra pretrain flags...]
#   CONFIG defaults to configs/base.json. The corpus (one sentence per line, blank line
#   between documents) must be at gs://$BUCKET/corpus/ (CORPUS overrides). The first run
#   builds vocab + shards under gs://$BUCKET/$RUN/, then pretrains; re-running the same
#   command resumes exactly from the newest checkpoint (after a preemption too: SIGTERM
#   saves the current step and exits with status 75).
# On a pod slice (ACCELERATOR with more than 8 cores/chips, e.g. v3-32) every host runs
# the same command (--worker=all) with --tpu $TPU_NAME, each reading its own shards;
# build the vocab and shards first (once) so hosts do not race to build them.
# Optional: TPU_NAME (electra-ko), ZONE (us-central1-f), RUN (electra_ko_base), ACCELERATOR (v3-8).
set -euo pipefail
: "${BUCKET:?set BUCKET to the GCS bucket holding corpus, data and models}"
CONFIG="${1:-configs/base.json}"
shift || true
TPU_NAME="${TPU_NAME:-electra-ko}"
ZONE="${ZONE:-us-central1-f}"
RUN="${RUN:-electra_ko_base}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
CORPUS="${CORPUS:-gs://$BUCKET/corpus/*.txt}"
DATA_DIR="gs://$BUCKET/$RUN"
SIZE="${ACCELERATOR##*-}"
if [ "$SIZE" -gt 8 ]; then TPU="$TPU_NAME"; WORKERS=all; else TPU=local; WORKERS=0; fi

printf -v EXTRA ' %q' "$@"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker="$WORKERS" --command "
  cd electra_ko && source .venv/bin/activate && nohup python -m electra_ko.pretrain \
    --config '$CONFIG' --tpu '$TPU' --corpus '$CORPUS' --set tpu_type='$ACCELERATOR' \
    --data_dir '$DATA_DIR' --model_dir '$DATA_DIR/model' $EXTRA \
    >> pretrain.log 2>&1 &
  echo started; tail -n 5 pretrain.log"
echo "Follow: gcloud compute tpus tpu-vm ssh $TPU_NAME --zone $ZONE --command 'grep \"train step\" electra_ko/pretrain.log | tail'"
echo "TensorBoard: tensorboard --logdir $DATA_DIR/model"
