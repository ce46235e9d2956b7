"""Throughput of `python -m electra_ko.build_data` with 1 and 2 worker processes.

    .venv/bin/python benchmarks/build_data.py [--corpus PATH] [--vocab_dir DIR]

Builds a 32000-token WordPiece vocab from the corpus once with `electra_ko.vocab`
(cached in --vocab_dir), then times the data builder as a fresh process per
worker count (max_seq_length 128, 8 shards, output in a temp dir) and prints
lines/s, tokens/s, examples/s, wall time and peak RSS. The last line is one JSON
object for the largest worker count. Lines count blank lines too, as
google-research/electra's builder reads them (its figures here: ~58 s, ~11,000
lines/s, ~142,000 tokens/s, 73,119 examples, 644 MB RSS).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CORPUS = os.path.join(os.path.dirname(REPO), "shared", "data", "corpus", "nsmc_reviews.txt")


def ensure_vocab(corpus, vocab_dir):
    if os.path.exists(os.path.join(vocab_dir, "vocab.txt")):
        return
    print(f"building the 32000 vocab in {vocab_dir} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "electra_ko.vocab", "--input", corpus,
                    "--output_dir", vocab_dir, "--vocab_size", "32000"], check=True, cwd=REPO)


def time_build(corpus, vocab_dir, num_workers):
    """Wall time, CPU time (user + sys of the builder and its workers), peak RSS (MB, largest
    of them) and the manifest. On a shared machine CPU time is the steadier figure."""
    with tempfile.TemporaryDirectory(prefix="bench_build_data_") as out:
        command = [sys.executable, "-m", "electra_ko.build_data", "--corpus", corpus,
                   "--vocab", vocab_dir, "--output_dir", out, "--num_shards", "8",
                   "--max_seq_length", "128", "--num_workers", str(num_workers)]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"build_data failed (status {status}): {' '.join(command)}")
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--vocab_dir", default=os.path.join(tempfile.gettempdir(),
                                                            "electra_ko_bench_vocab32k"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    ensure_vocab(args.corpus, args.vocab_dir)
    for num_workers in args.workers:
        wall, cpu, rss_mb, manifest = time_build(args.corpus, args.vocab_dir, num_workers)
        lines = sum(shard["lines"] for shard in manifest["shards"])
        result = {"num_workers": num_workers, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                  "load_avg_1min": round(os.getloadavg()[0], 2),
                  "lines_per_s": round(lines / wall), "tokens_per_s": round(manifest["tokens"] / wall),
                  "examples_per_s": round(manifest["examples"] / wall),
                  "peak_rss_mb": round(rss_mb), "examples": manifest["examples"],
                  "tokens": manifest["tokens"], "lines": lines}
        print(f"workers={num_workers}: {result['lines_per_s']:,} lines/s, "
              f"{result['tokens_per_s']:,} tokens/s, {result['examples_per_s']:,} examples/s, "
              f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss_mb:.0f} MB, {manifest['examples']:,} examples",
              flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
