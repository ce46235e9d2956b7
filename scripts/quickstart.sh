#!/usr/bin/env bash
# Install electra_ko into .venv, then run the whole pipeline end to end on the bundled
# Korean sample: corpus -> vocab -> TFRecords -> pretraining -> NSMC fine-tuning -> export.
# A few minutes on a laptop CPU. Everything lands in ./quickstart_out (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv "."
export TF_CPP_MIN_LOG_LEVEL=2
OUT="${1:-quickstart_out}"
SAMPLE=electra_ko/sample
rm -rf "$OUT"
mkdir -p "$OUT"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/6 corpus: clean and split the raw sample"
python -m electra_ko.corpus --input "$SAMPLE/korean_sample.txt" --output "$OUT/corpus.txt"

step "2/6 vocab: WordPiece vocabulary"
python -m electra_ko.vocab --input "$OUT/corpus.txt" --output_dir "$OUT/vocab" \
  --vocab_size 2000 --num_unused 20 --min_frequency 1 --heldout_lines 20

step "3/6 data: sharded TFRecords"
python -m electra_ko.build_data --corpus "$OUT/corpus.txt" --vocab "$OUT/vocab" \
  --output_dir "$OUT/shards" --num_shards 2 --max_seq_length 64

echo
echo "Artefacts:"
echo "  corpus      $OUT/corpus.txt (+ corpus.txt.stats.json)"
echo "  vocab       $OUT/vocab/vocab.txt (+ vocab_meta.json)"
echo "  shards      $OUT/shards/ (+ manifest.json)"
