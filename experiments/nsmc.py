"""NSMC reference numbers: pretrained ELECTRA vs random init vs a TF-IDF baseline.

    # (c) character 1-4-gram TF-IDF + logistic regression, full training set (~1 min)
    python experiments/nsmc.py --data_dir ../shared/data/nsmc --runs tfidf

    # (a) pretrained, (b) same architecture from random init, same budget, (c) TF-IDF
    python experiments/nsmc.py --data_dir ../shared/data/nsmc --work_dir runs/nsmc_ft \
        --init_checkpoint runs/model_tiny/discriminator --model_config runs/model_tiny/config.json \
        --max_train_examples 24000 --epochs 3 --max_seq_length 64 --figures docs/figures

The ELECTRA runs go through the real CLI, `python -m electra_ko.finetune --task nsmc`,
in a subprocess: the command printed is the command a user types. NSMC has no dev
set, so the last `--dev_examples` rows of `ratings_train.txt` become one (written to
`work_dir/data/`): the best epoch is picked on it and `ratings_test.txt` is scored once,
never used for selection. Both ELECTRA runs see the same first `--max_train_examples`
training rows for the same number of epochs, steps, learning rate and sequence length;
only the initial weights differ. Outputs: each run's `results.json` under `work_dir`,
`comparison.json` there, and with `--figures DIR` a Markdown table
(`nsmc_finetune.md`) and the fine-tuning curves (`nsmc_finetune.png`).
"""
import argparse
import glob
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

import matplotlib
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from electra_ko import checkpoints, tasks

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRAIN_FILE, DEV_FILE, TEST_FILE = "train.txt", "dev.txt", "ratings_test.txt"
RUN_NAMES = ("pretrained", "random", "tfidf")


def tfidf_baseline(data_dir, max_features=None, c=1.0, max_train_examples=None):
    """Test accuracy of char 1-4-gram TF-IDF + logistic regression on NSMC."""
    spec = tasks.get_task("nsmc")
    train = tasks.read_examples(spec, os.path.join(data_dir, spec.train_files[0]))
    train = train.head(max_train_examples)
    test = tasks.read_examples(spec, os.path.join(data_dir, spec.test_file))
    started = time.time()
    vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(1, 4), sublinear_tf=True,
                                 max_features=max_features)
    features = vectorizer.fit_transform(train.text_a)
    classifier = LogisticRegression(C=c, max_iter=1000).fit(features, train.labels)
    predictions = classifier.predict(vectorizer.transform(test.text_a))
    return {"test_accuracy": tasks.accuracy(test.labels, predictions),
            "train_examples": len(train), "test_examples": len(test),
            "skipped_empty": {"train": train.num_empty, "test": test.num_empty},
            "features": features.shape[1], "seconds": round(time.time() - started, 1)}


# ----------------------------------------------------------------------- ELECTRA runs


def write_dev_split(data_dir, out_dir, dev_examples):
    """out_dir/train.txt + dev.txt (the last `dev_examples` rows of ratings_train.txt, as
    is) and a link to ratings_test.txt. Rows are copied byte for byte, header included."""
    source = os.path.join(data_dir, "ratings_train.txt")
    with open(source, encoding="utf-8") as f:
        header, *rows = f.readlines()
    if not 0 < dev_examples < len(rows):
        raise SystemExit(f"error: --dev_examples {dev_examples}: {source} has {len(rows)} rows")
    os.makedirs(out_dir, exist_ok=True)
    for name, part in ((TRAIN_FILE, rows[:-dev_examples]), (DEV_FILE, rows[-dev_examples:])):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.writelines([header] + part)
    test_link = os.path.join(out_dir, TEST_FILE)
    if not os.path.exists(test_link):
        os.symlink(os.path.abspath(os.path.join(data_dir, TEST_FILE)), test_link)
    return out_dir


def finetune_command(args, name, data_dir):
    """The `python -m electra_ko.finetune` argv for run `name` (pretrained | random)."""
    command = ["python", "-m", "electra_ko.finetune", "--task", "nsmc",
               "--data_dir", data_dir, "--train_file", TRAIN_FILE, "--eval_file", DEV_FILE,
               "--test_file", TEST_FILE, "--vocab", args.vocab,
               "--output_dir", os.path.join(args.work_dir, name),
               "--max_train_examples", str(args.max_train_examples),
               "--epochs", str(args.epochs), "--max_seq_length", str(args.max_seq_length),
               "--learning_rate", str(args.learning_rate), "--batch_size", str(args.batch_size)]
    if name == "pretrained":
        return command + ["--init_checkpoint", args.init_checkpoint]
    return command + ["--model_config", args.model_config]


def code_sha256():
    """One hash of the electra_ko sources: a run made by other code is not reused."""
    digest = hashlib.sha256()
    package = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "electra_ko")
    for path in sorted(glob.glob(os.path.join(package, "*.py"))):
        with open(path, "rb") as f:
            digest.update(os.path.basename(path).encode() + b"\0" + f.read())
    return digest.hexdigest()


def run_finetune(command, output_dir, reuse):
    """Run the CLI (progress bars pass through); returns its results.json + wall time.

    `reuse` skips a run already done (its run.json) with the same command and the same
    electra_ko code (a changed default changes results without changing the command)."""
    record_path = os.path.join(output_dir, "run.json")
    code = code_sha256()
    if reuse and os.path.exists(record_path):
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
        if record["command"] == command and record.get("code_sha256") == code:
            print(f"reusing {output_dir} (same command, same code)", flush=True)
            return record
        print(f"not reusing {output_dir}: the command or the electra_ko code changed", flush=True)
    print("$ " + shlex.join(command), flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    started = time.time()
    returncode = subprocess.run([sys.executable] + command[1:], env=env).returncode
    if returncode:
        raise SystemExit(f"error: the fine-tuning command above failed (exit {returncode})")
    wall = round(time.time() - started, 1)
    with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as f:
        results = json.load(f)
    record = {"command": command, "code_sha256": code, "wall_seconds": wall, "results": results}
    with open(record_path, "w", encoding="utf-8") as f:
        json.dump(record, f, ensure_ascii=False, indent=2)
    print(f"wall time {wall:.0f} s; test accuracy {results['final']['test']['accuracy']:.2f}",
          flush=True)
    return record


def summarize_finetune(record):
    """The comparison row of one fine-tuning run: test score, curve, budget, time."""
    results = record["results"]
    seed = next(s for s in results["seeds"] if s["seed"] == results["best_seed"])
    return {"command": shlex.join(record["command"]), "wall_seconds": record["wall_seconds"],
            "test_accuracy": results["final"]["test"]["accuracy"],
            "dev_accuracy": results["final"]["eval"]["accuracy"],
            "best_epoch": seed["best_epoch"], "train_examples": results["examples"]["train"],
            "steps": seed["epochs"][-1]["steps"],
            "train_examples_per_second": results["train_examples_per_second"],
            "curve": [{"epoch": e["epoch"], "steps": e["steps"], "train_loss": e["train_loss"],
                       "dev_accuracy": e["eval"]["accuracy"]} for e in seed["epochs"]]}


# ----------------------------------------------------------------------- report


LABELS = {"pretrained": "(a) tiny, pretrained", "random": "(b) same, random init",
          "tfidf": "(c) char 1-4-gram TF-IDF + LR"}


def pretrained_label(init_checkpoint):
    """(a)'s label names the objective its checkpoint was pretrained with."""
    with open(os.path.join(init_checkpoint, "config.json"), encoding="utf-8") as f:
        masked_lm = json.load(f).get(checkpoints.MASKED_LM_KEY, False)
    return LABELS["pretrained"] + (" (plain masked LM)" if masked_lm else " (ELECTRA discriminator)")


def label(comparison, name):
    return comparison[name].get("label", LABELS[name])


def markdown_table(comparison):
    lines = ["| model | NSMC test acc. | train examples | steps | best epoch (dev) | wall time |",
             "|---|---:|---:|---:|---:|---:|"]
    for name in RUN_NAMES:
        row = comparison.get(name)
        if row is None:
            continue
        steps = row.get("steps", "-")
        epoch = row.get("best_epoch", "-")
        seconds = row.get("wall_seconds", row.get("seconds"))
        lines.append(f"| {label(comparison, name)} | {row['test_accuracy']:.2f} | {row['train_examples']:,} "
                     f"| {steps} | {epoch} | {seconds / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def plot_curves(comparison, output):
    """Dev accuracy and mean training loss per epoch, against steps, for the ELECTRA runs;
    the TF-IDF test accuracy as a reference line."""
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("pretrained", "random"):
        if name not in comparison:
            continue
        curve = comparison[name]["curve"]
        steps = [point["steps"] for point in curve]
        accuracy_axis.plot(steps, [p["dev_accuracy"] for p in curve], "o-", label=label(comparison, name))
        loss_axis.plot(steps, [p["train_loss"] for p in curve], "o-", label=label(comparison, name))
    if "tfidf" in comparison:
        accuracy_axis.axhline(comparison["tfidf"]["test_accuracy"], color="gray", linestyle="--",
                              label=LABELS["tfidf"] + " (test)")
    accuracy_axis.set(title="NSMC dev accuracy after each epoch", xlabel="fine-tuning step",
                      ylabel="accuracy (%)")
    loss_axis.set(title="mean training loss of each epoch", xlabel="fine-tuning step",
                  ylabel="cross-entropy")
    for axis in (accuracy_axis, loss_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    plt.close(figure)


def write_figures(comparison, figures_dir):
    os.makedirs(figures_dir, exist_ok=True)
    with open(os.path.join(figures_dir, "nsmc_finetune.md"), "w", encoding="utf-8") as f:
        f.write(markdown_table(comparison))
    with open(os.path.join(figures_dir, "nsmc_finetune.json"), "w", encoding="utf-8") as f:
        json.dump(comparison, f, ensure_ascii=False, indent=2)
    if "pretrained" in comparison or "random" in comparison:
        plot_curves(comparison, os.path.join(figures_dir, "nsmc_finetune.png"))


# ----------------------------------------------------------------------- CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True, help="directory with ratings_*.txt")
    parser.add_argument("--runs", default="tfidf", help="comma-separated subset of "
                        f"{','.join(RUN_NAMES)} (default: tfidf)")
    parser.add_argument("--work_dir", help="fine-tuning outputs (and the dev split) go here")
    parser.add_argument("--init_checkpoint", help="pretrained discriminator directory, for (a)")
    parser.add_argument("--model_config", default="configs/tiny.json",
                        help="architecture of the random-init run (b): the pretraining run's "
                        "config.json, so both runs have the same shape")
    parser.add_argument("--vocab", help="vocab dir (default: the --init_checkpoint directory)")
    parser.add_argument("--max_train_examples", type=int, default=24000)
    parser.add_argument("--dev_examples", type=int, default=5000,
                        help="rows from the end of ratings_train.txt held out for model selection")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--tfidf_max_train_examples", type=int, default=None,
                        help="train the TF-IDF baseline on the first N rows (default: all)")
    parser.add_argument("--max_features", type=int, default=None, help="TF-IDF vocabulary cap")
    parser.add_argument("--C", type=float, default=1.0, help="LR inverse regularisation strength")
    parser.add_argument("--figures", help="write nsmc_finetune.{md,json,png} here")
    parser.add_argument("--reuse", action="store_true",
                        help="skip fine-tuning runs already done with the same command and code")
    args = parser.parse_args(argv)
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    unknown = sorted(set(args.runs) - set(RUN_NAMES))
    if unknown:
        parser.error(f"--runs: unknown {', '.join(unknown)} (choose from {', '.join(RUN_NAMES)})")
    electra = [r for r in args.runs if r != "tfidf"]
    if electra and not args.work_dir:
        parser.error(f"--runs {','.join(electra)} needs --work_dir")
    if "pretrained" in args.runs and not args.init_checkpoint:
        parser.error("--runs pretrained needs --init_checkpoint")
    args.vocab = args.vocab or args.init_checkpoint
    if electra and not args.vocab:
        parser.error("give --vocab (the vocabulary of the pretraining run)")
    return args


def main(argv=None):
    args = parse_args(argv)
    comparison = {}
    if "tfidf" in args.runs:
        comparison["tfidf"] = tfidf_baseline(args.data_dir, args.max_features, args.C,
                                             args.tfidf_max_train_examples)
        print(json.dumps({"tfidf": comparison["tfidf"]}, indent=2), flush=True)
    electra = [r for r in args.runs if r != "tfidf"]
    if electra:
        split_dir = write_dev_split(args.data_dir, os.path.join(args.work_dir, "data"),
                                    args.dev_examples)
        for name in electra:
            record = run_finetune(finetune_command(args, name, split_dir),
                                  os.path.join(args.work_dir, name), args.reuse)
            comparison[name] = summarize_finetune(record)
            if name == "pretrained":
                comparison[name]["label"] = pretrained_label(args.init_checkpoint)
        with open(os.path.join(args.work_dir, "comparison.json"), "w", encoding="utf-8") as f:
            json.dump(comparison, f, ensure_ascii=False, indent=2)
    print(markdown_table(comparison))
    if args.figures:
        write_figures(comparison, args.figures)
        print(f"wrote {args.figures}/nsmc_finetune.md, .json, .png")


if __name__ == "__main__":
    main()
