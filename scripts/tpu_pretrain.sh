#!/usr/bin/env bash
# Pretrain ELECTRA on the TPU VM made by scripts/tpu_create.sh, data and model in GCS.
# Usage: BUCKET=my-bucket scripts/tpu_pretrain.sh [CONFIG] [extra pretrain flags...]
#   CONFIG defaults to configs/base.json. The corpus (one sentence per line, blank line
#   between documents) must be at gs://$BUCKET/corpus/ (CORPUS overrides). The first run
#   builds vocab + shards under gs://$BUCKET/$RUN/, then pretrains; re-running the same
#   command resumes from the newest checkpoint (after a preemption too).
# Optional: TPU_NAME (electra-ko), ZONE (us-central1-f), RUN (electra_ko_base).
set -euo pipefail
: "${BUCKET:?set BUCKET to the GCS bucket holding corpus, data and models}"
CONFIG="${1:-configs/base.json}"
shift || true
TPU_NAME="${TPU_NAME:-electra-ko}"
ZONE="${ZONE:-us-central1-f}"
RUN="${RUN:-electra_ko_base}"
CORPUS="${CORPUS:-gs://$BUCKET/corpus/*.txt}"
DATA_DIR="gs://$BUCKET/$RUN"

printf -v EXTRA ' %q' "$@"
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --command "
  cd electra_ko && nohup python3 -m electra_ko.pretrain \
    --config '$CONFIG' --tpu local --corpus '$CORPUS' \
    --data_dir '$DATA_DIR' --model_dir '$DATA_DIR/model' $EXTRA \
    >> pretrain.log 2>&1 &
  echo started; tail -n 5 pretrain.log"
echo "Follow: gcloud compute tpus tpu-vm ssh $TPU_NAME --zone $ZONE --command 'grep \"train step\" electra_ko/pretrain.log | tail'"
echo "TensorBoard: tensorboard --logdir $DATA_DIR/model"
