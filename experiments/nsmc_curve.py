"""NSMC test accuracy against the number of labelled reviews: where pretraining pays.

Reads the `comparison.json` of several `experiments/nsmc.py` work dirs, one per
`--max_train_examples` (pass `--tfidf_max_train_examples` the same N so the TF-IDF row
sees the same reviews), and prints one Markdown row per size: (a) pretrained, (b) random
init, their gap, (c) TF-IDF. With `--output` it also draws the three curves.

    for n in 1200 2400 6000 12000 24000; do
      python experiments/nsmc.py --data_dir ../shared/data/nsmc --runs tfidf,pretrained,random \
          --work_dir outputs/nsmc_n$n --max_train_examples $n --tfidf_max_train_examples $n ...
    done
    python experiments/nsmc_curve.py outputs/nsmc_n* --output docs/figures/nsmc_labels.png
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = (("pretrained", "(a) pretrained"), ("random", "(b) random init"),
        ("tfidf", "(c) TF-IDF + LR"))


def load_point(work_dir):
    """(labelled reviews, {run: test accuracy}) of one work dir; all its runs must have
    seen the same number of reviews, or the point would compare unlike budgets."""
    path = os.path.join(work_dir, "comparison.json")
    if not os.path.exists(path):
        raise SystemExit(f"error: {path} not found (run experiments/nsmc.py with --work_dir {work_dir})")
    with open(path, encoding="utf-8") as f:
        comparison = json.load(f)
    sizes = {name: row["train_examples"] for name, row in comparison.items()}
    if len(set(sizes.values())) != 1:
        raise SystemExit(f"error: {path}: the runs saw different numbers of training reviews "
                         f"{sizes}; give --tfidf_max_train_examples the same N as --max_train_examples")
    return next(iter(sizes.values())), {name: row["test_accuracy"] for name, row in comparison.items()}


def markdown_table(points):
    lines = ["| labelled reviews | (a) pretrained | (b) random init | (a) - (b) | (c) TF-IDF + LR |",
             "|---:|---:|---:|---:|---:|"]
    for size, accuracy in points:
        cells = [f"{accuracy[name]:.2f}" if name in accuracy else "-" for name, _ in RUNS]
        gap = (f"{accuracy['pretrained'] - accuracy['random']:+.2f}"
               if {"pretrained", "random"} <= accuracy.keys() else "-")
        lines.append(f"| {size:,} | {cells[0]} | {cells[1]} | {gap} | {cells[2]} |")
    return "\n".join(lines) + "\n"


def plot(points, output):
    figure, axis = plt.subplots(figsize=(6, 4))
    for name, label in RUNS:
        xy = [(size, accuracy[name]) for size, accuracy in points if name in accuracy]
        axis.plot([x for x, _ in xy], [y for _, y in xy], "o-", label=label)
    axis.set_xscale("log")
    axis.set(title="NSMC test accuracy by training-set size", xlabel="labelled reviews",
             ylabel="accuracy (%)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dirs", nargs="+", help="experiments/nsmc.py work dirs")
    parser.add_argument("--output", help="write the curves to this PNG")
    args = parser.parse_args(argv)
    points = sorted((load_point(d) for d in args.work_dirs), key=lambda point: point[0])
    print(markdown_table(points))
    if args.output:
        plot(points, args.output)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
