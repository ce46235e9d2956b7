#!/usr/bin/env bash
# Create a Cloud TPU VM and a GCS bucket for electra_ko pretraining, then install the package.
# Usage: PROJECT=my-project BUCKET=my-bucket scripts/tpu_create.sh
# Optional: TPU_NAME (electra-ko), ZONE (us-central1-f), ACCELERATOR (v3-8),
#           RUNTIME (tpu-vm-tf-2.21.0-pjrt; list them with
#           `gcloud compute tpus tpu-vm versions list --zone $ZONE`), REPO_URL.
set -euo pipefail
: "${PROJECT:?set PROJECT to your GCP project id}"
: "${BUCKET:?set BUCKET to a GCS bucket name (created if missing)}"
TPU_NAME="${TPU_NAME:-electra-ko}"
ZONE="${ZONE:-us-central1-f}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
RUNTIME="${RUNTIME:-tpu-vm-tf-2.21.0-pjrt}"
REPO_URL="${REPO_URL:-https://github.com/your-org/electra_ko.git}"
REGION="${ZONE%-*}"

gcloud config set project "$PROJECT"
gcloud services enable tpu.googleapis.com storage.googleapis.com
if ! gcloud storage buckets describe "gs://$BUCKET" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$BUCKET" --location "$REGION"
fi
gcloud compute tpus tpu-vm create "$TPU_NAME" --zone "$ZONE" \
  --accelerator-type "$ACCELERATOR" --version "$RUNTIME"
# The TPU VM's service account must read and write the bucket (data, checkpoints).
SA="$(gcloud compute tpus tpu-vm describe "$TPU_NAME" --zone "$ZONE" \
  --format 'value(serviceAccount.email)')"
gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
  --member "serviceAccount:$SA" --role roles/storage.objectAdmin
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --command \
  "git clone '$REPO_URL' electra_ko && cd electra_ko && python3 -m pip install -e ."
echo "TPU VM $TPU_NAME ready in $ZONE; data and models go to gs://$BUCKET"
