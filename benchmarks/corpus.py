"""Speed and memory of `python -m electra_ko.corpus` on the NSMC review corpus.

    .venv/bin/python benchmarks/corpus.py [--input PATH] [--splitter_lines N]

Runs the CLI with default cleaning in a child process (so peak RSS is the stage's own),
then times the rule-based splitter alone and, when the `kss` package is importable,
kss's splitter on the same lines. Last output line: one JSON object.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
DEFAULT_INPUT = os.path.join(REPO, "..", "shared", "data", "corpus", "nsmc_reviews.txt")

from electra_ko.sentences import split_sentences  # noqa: E402


def run_stage(path, output):
    """Wall time, CPU time and peak RSS (MB) of the corpus CLI as a child process.

    CPU time is reported too because wall time on a shared machine depends on the load.
    """
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "electra_ko.corpus", "--input", path,
                    "--output", output], cwd=REPO, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def first_lines(path, count):
    lines = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                lines.append(line.strip())
            if len(lines) == count:
                break
    return lines


def lines_per_cpu_second(split, lines):
    """CPU time, not wall time: the splitter figures should not depend on the machine's load."""
    started = time.process_time()
    for line in lines:
        split(line)
    return len(lines) / (time.process_time() - started)


def kss_splitter():
    """kss's split_sentences, or None when kss is not installed (it is optional)."""
    try:
        import kss
    except ImportError:
        return None
    return kss.split_sentences


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default=os.path.normpath(DEFAULT_INPUT))
    parser.add_argument("--splitter_lines", type=int, default=20000,
                        help="lines used to time the splitters alone")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        output = os.path.join(workdir, "corpus.txt")
        wall, cpu, peak_rss_mb = run_stage(args.input, output)
        with open(output + ".stats.json", encoding="utf-8") as handle:
            stats = json.load(handle)
    megabytes = stats["bytes_in"] / 2**20
    result = {
        "lines_per_s": round(stats["lines_in"] / wall),
        "mb_per_s": round(megabytes / wall, 2),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "lines_per_cpu_s": round(stats["lines_in"] / cpu),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "lines_in": stats["lines_in"],
        "lines_out": stats["lines_out"],
        "documents_out": stats["documents_out"],
        "input_mb": round(megabytes, 1),
    }
    print(f"corpus stage: {result['lines_per_s']:,} lines/s, {result['mb_per_s']} MB/s, "
          f"wall {result['wall_s']} s (CPU {result['cpu_s']} s), "
          f"peak RSS {result['peak_rss_mb']} MB")

    sample = first_lines(args.input, args.splitter_lines)
    rules_speed = result["rules_splitter_lines_per_cpu_s"] = round(
        lines_per_cpu_second(split_sentences, sample))
    print(f"rule-based splitter alone: {rules_speed:,} lines per CPU s")
    kss_split = kss_splitter()
    if kss_split is not None:
        kss_sample = sample[:max(1, len(sample) // 20)]  # kss is far slower: time fewer lines
        kss_speed = result["kss_splitter_lines_per_cpu_s"] = round(
            lines_per_cpu_second(kss_split, kss_sample), 1)
        print(f"kss splitter: {kss_speed:,} lines per CPU s on {len(kss_sample)} lines")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
