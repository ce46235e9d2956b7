"""Pretraining curves from a model_dir's TensorBoard logs: a PNG and the final metrics.

    python experiments/plot_pretrain.py --model_dir /work/runs/nsmc/model_tiny \
        --output docs/figures/pretrain_tiny_nsmc.png

Reads the scalars `python -m electra_ko.pretrain` writes to `model_dir/train` (every
`iterations_per_loop` steps) and `model_dir/eval` (`--do_eval`, at the end), plots
losses, generator/discriminator metrics and the learning rate against the step, and
writes `<output>.json`: the last training values, the held-out eval values, the step,
the wall time between the first and last training summary and the run's config.
Safe on a run still in progress (it only reads).

    python experiments/plot_pretrain.py --compare "(a) tied=runs/a" --compare "(c) two-stage=runs/c" \
        --tag disc_auc --output docs/figures/disc_auc_by_recipe.png

draws one tag of several runs against the step instead, one line per `LABEL=MODEL_DIR`.
"""
import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # tensorboard's tensor_util loads TF

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.util import tensor_util  # noqa: E402

# One panel per tuple: (title, tags drawn in it). Tags absent from a run are left out,
# so a plain masked-LM run (`electra_objective: false`) plots only the generator side.
PANELS = (
    ("total loss (MLM + disc_weight x RTD)", ("loss",)),
    ("generator MLM loss", ("mlm_loss",)),
    ("discriminator RTD loss", ("disc_loss",)),
    ("generator accuracy", ("mlm_acc", "sampled_acc")),
    ("discriminator", ("disc_auc", "disc_acc", "disc_precision", "disc_recall")),
    ("learning rate", ("lr",)),
)


class NoSummariesError(ValueError):
    """The model_dir has no TensorBoard scalars to plot."""


def read_scalars(log_dir, up_to_step=None):
    """{tag: [(step, value, wall_time)] sorted by step} from every event file in log_dir,
    optionally only up to a step (the checkpoint a snapshot was exported from).

    TF2's `tf.summary.scalar` stores tensors, not legacy scalars. After a resume the
    same step can be logged twice: the later write wins.
    """
    if not os.path.isdir(log_dir):
        return {}
    accumulator = event_accumulator.EventAccumulator(
        log_dir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags()["tensors"]:
        by_step = {e.step: (e.step, float(tensor_util.make_ndarray(e.tensor_proto)), e.wall_time)
                   for e in accumulator.Tensors(tag)}
        series[tag] = sorted(by_step.values())
    for tag in accumulator.Tags()["scalars"]:
        by_step = {e.step: (e.step, e.value, e.wall_time) for e in accumulator.Scalars(tag)}
        series[tag] = sorted(by_step.values())
    if up_to_step is not None:
        series = {tag: [p for p in points if p[0] <= up_to_step] for tag, points in series.items()}
    return {tag: points for tag, points in series.items() if points}


def final_metrics(model_dir, train, evaluation, eval_dir):
    """The JSON written next to the PNG: what the README quotes."""
    if not train:
        raise NoSummariesError(f"{model_dir}/train: no TensorBoard scalars (has the run "
                               "logged its first iterations_per_loop steps yet?)")
    loss = train.get("loss") or next(iter(train.values()))
    config_path = os.path.join(model_dir, "config.json")
    config = None
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    return {
        "model_dir": model_dir,
        "step": loss[-1][0],
        "train_wall_seconds": round(loss[-1][2] - loss[0][2], 1),
        "train": {tag: values[-1][1] for tag, values in sorted(train.items())},
        "eval": {tag: values[-1][1] for tag, values in sorted(evaluation.items())},
        "eval_step": max((v[-1][0] for v in evaluation.values()), default=None),
        "eval_dir": eval_dir,
        "config": config,
    }


def plot(train, evaluation, title, output):
    """A grid of panels; training curves as lines, held-out eval values as markers."""
    panels = [(name, [t for t in tags if t in train or t in evaluation])
              for name, tags in PANELS]
    panels = [(name, tags) for name, tags in panels if tags]
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, (name, tags) in zip(axes.flat, panels):
        for tag in tags:
            line = None
            if tag in train:
                steps, values, _ = zip(*train[tag])
                (line,) = axis.plot(steps, values, label=tag)
            if tag in evaluation:
                steps, values, _ = zip(*evaluation[tag])
                axis.plot(steps, values, "o", color=line.get_color() if line else None,
                          label=f"{tag} (held-out eval)")
        axis.set_title(name)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if len(tags) > 1 or any(t in evaluation for t in tags):
            axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def plot_compare(runs, tag, title, output):
    """`tag` of every (label, model_dir) in `runs` against the step, in one panel."""
    figure, axis = plt.subplots(figsize=(7, 4.2))
    for label, model_dir in runs:
        points = read_scalars(os.path.join(model_dir, "train")).get(tag)
        if not points:
            raise NoSummariesError(f"{model_dir}/train: no {tag!r} scalars")
        steps, values, _ = zip(*points)
        axis.plot(steps, values, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel(tag)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_dir", help="pretraining --model_dir")
    source.add_argument("--compare", action="append", metavar="LABEL=MODEL_DIR",
                        help="repeatable: plot --tag of several runs in one panel")
    parser.add_argument("--tag", default="disc_auc", help="with --compare: the scalar to plot")
    parser.add_argument("--output", required=True, help="PNG path; the JSON goes next to it")
    parser.add_argument("--title", default=None, help="figure title (default: the model_dir)")
    parser.add_argument("--eval_dir", default=None, help="held-out eval summaries written "
                        "elsewhere, e.g. by evaluating a copied checkpoint in another model_dir "
                        "(default: model_dir/eval)")
    parser.add_argument("--up_to_step", type=int, default=None,
                        help="ignore training summaries after this step")
    args = parser.parse_args()
    if args.compare:
        if any("=" not in item for item in args.compare):
            parser.error("--compare takes LABEL=MODEL_DIR")
        runs = [tuple(item.split("=", 1)) for item in args.compare]
        try:
            plot_compare(runs, args.tag, args.title or args.tag, args.output)
        except NoSummariesError as e:
            parser.exit(2, f"error: {e}\n")
        print(f"wrote {args.output}")
        return
    train = read_scalars(os.path.join(args.model_dir, "train"), args.up_to_step)
    eval_dir = args.eval_dir or os.path.join(args.model_dir, "eval")
    evaluation = read_scalars(eval_dir)
    try:
        metrics = final_metrics(args.model_dir, train, evaluation, eval_dir)
    except NoSummariesError as e:
        parser.exit(2, f"error: {e}\n")
    plot(train, evaluation, args.title or f"ELECTRA pretraining: {args.model_dir}", args.output)
    json_path = os.path.splitext(args.output)[0] + ".json"
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps({k: metrics[k] for k in ("step", "train", "eval")}, indent=2))
    print(f"wrote {args.output} and {json_path}")


if __name__ == "__main__":
    main()
