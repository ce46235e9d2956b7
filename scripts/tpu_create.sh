#!/usr/bin/env bash
# Create a Cloud TPU VM (or a multi-host pod slice) and a GCS bucket, then install
# electra_ko on every host with scripts/install_tpu.sh (TensorFlow 2.20's TPU build).
#
#   PROJECT=my-project BUCKET=my-bucket SOURCE=https://github.com/my-org/electra_ko.git \
#     scripts/tpu_create.sh
#
# SOURCE (required, checked before anything is created or billed): a git URL to clone,
# or a gs:// path of an sdist (`python -m build --sdist`, then `gcloud storage cp`).
# Optional: TPU_NAME (electra-ko), ZONE (us-central1-f), ACCELERATOR (v3-8; v3-32, v4-32,
# ... are pod slices of several hosts), RUNTIME (the TPU software version; default: the
# base image Google documents for the generation, TensorFlow coming from pip), GIT_REF.
set -euo pipefail
: "${PROJECT:?set PROJECT to your GCP project id}"
: "${BUCKET:?set BUCKET to a GCS bucket name (created if missing)}"
: "${SOURCE:?set SOURCE to the electra_ko git URL or a gs:// sdist (.tar.gz) to install on the TPU VM}"
TPU_NAME="${TPU_NAME:-electra-ko}"
ZONE="${ZONE:-us-central1-f}"
ACCELERATOR="${ACCELERATOR:-v3-8}"
REGION="${ZONE%-*}"
GENERATION="${ACCELERATOR%-*}"
SIZE="${ACCELERATOR##*-}"
HOSTS=$(( SIZE > 8 ? SIZE / 8 : 1 ))

case "$GENERATION" in  # TPU software versions for a pip-installed framework
  v2|v3|v4) DEFAULT_RUNTIME=tpu-ubuntu2204-base ;;
  v5litepod|v5e) DEFAULT_RUNTIME=v2-alpha-tpuv5-lite ;;
  v5p) DEFAULT_RUNTIME=v2-alpha-tpuv5 ;;
  v6e) DEFAULT_RUNTIME=v2-alpha-tpuv6e ;;
  *) echo "error: unknown ACCELERATOR $ACCELERATOR (expected e.g. v3-8, v4-32, v5litepod-8, v6e-8)" >&2; exit 2 ;;
esac
RUNTIME="${RUNTIME:-$DEFAULT_RUNTIME}"

# Check the source before creating (and paying for) anything.
case "$SOURCE" in
  *your-org*) echo "error: SOURCE=$SOURCE is the documentation's placeholder" >&2; exit 2 ;;
  gs://*)
    gcloud storage ls "$SOURCE" >/dev/null || { echo "error: SOURCE $SOURCE not found" >&2; exit 2; }
    INSTALL="gcloud storage cp '$SOURCE' . && mkdir -p electra_ko && tar -xzf '$(basename "$SOURCE")' -C electra_ko --strip-components=1" ;;
  *)
    git ls-remote "$SOURCE" >/dev/null || { echo "error: cannot read git repository $SOURCE" >&2; exit 2; }
    INSTALL="(test -d electra_ko || git clone '$SOURCE' electra_ko) && cd electra_ko && git checkout '${GIT_REF:-HEAD}' && cd .." ;;
esac

echo "creating $ACCELERATOR ($HOSTS host(s)) $TPU_NAME in $ZONE with runtime $RUNTIME"
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
# Every host of a pod slice runs the same program on its own share of the input.
gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command \
  "$INSTALL && cd electra_ko && scripts/install_tpu.sh"
echo "TPU $TPU_NAME ($ACCELERATOR, $HOSTS host(s)) ready in $ZONE; data and models go to gs://$BUCKET"
echo "First run the smoke test: gcloud compute tpus tpu-vm ssh $TPU_NAME --zone $ZONE --worker=all \\"
echo "  --command 'cd electra_ko && MODEL_DIR=gs://$BUCKET/smoke TPU=$( [ "$HOSTS" -gt 1 ] && echo "$TPU_NAME" || echo local ) scripts/tpu_smoke.sh'"
