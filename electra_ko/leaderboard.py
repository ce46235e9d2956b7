"""Leaderboard: several tasks x several models -> a Markdown table, as Korean model releases
publish it.

    python -m electra_ko.leaderboard --tasks nsmc,korsts --data_root data/ \\
        --init_checkpoint models/a/discriminator --init_checkpoint random --model_config configs/tiny.json

Each task reads `<data_root>/<task>/` with the task's default file names. Every
(model, task) pair is one `electra_ko.finetune` run in `<output_dir>/<model>/<task>/`.
The table shows the test metric when the test file has labels, else the eval metric
(KorSTS: Spearman; hate speech: accuracy and macro-F1), as mean ± std over `--seeds`
when several are given. `benchmark.md` and `benchmark.json` go to `--output_dir` (their names
are from when this module was `electra_ko.benchmark`, which still runs it).
"""
import os
import sys

from absl import app, flags, logging

from electra_ko import finetune, storage, tasks

RANDOM = "random"
TABLE_FILE = "benchmark.md"
JSON_FILE = "benchmark.json"
TASK_TITLES = {"nsmc": "NSMC (acc)", "kornli": "KorNLI (acc)", "korsts": "KorSTS (spearman)",
               "question_pair": "Question Pair (acc)", "hate_speech": "Hate Speech (acc / F1)"}


def model_name(init_checkpoint) -> str:
    """A short row label: the checkpoint's directory name (its parent for `discriminator`)."""
    if not init_checkpoint or init_checkpoint == RANDOM:
        return "random init"
    path = os.path.normpath(init_checkpoint)
    base = os.path.basename(path)
    if base in ("discriminator", "model"):
        base = os.path.basename(os.path.dirname(path)) + "/" + base
    return base


def reported(results: dict) -> dict:
    """The metrics a table cell shows: test when labelled, else eval; over seeds if several."""
    split = "test" if results["final"].get("test") else "eval"
    if len(results["seeds"]) > 1:
        return {metric: {"mean": s["mean"], "std": s["std"]}
                for metric, s in results["aggregate"][split].items()}
    return {metric: {"mean": value} for metric, value in results["final"][split].items()}


def format_cell(task: str, metrics: dict) -> str:
    def one(metric):
        value = metrics[metric]
        text = f"{value['mean']:.2f}"
        return text + (f" ± {value['std']:.2f}" if "std" in value else "")
    names = tasks.get_task(task).metrics if task in tasks.TASKS else tuple(metrics)
    shown = [m for m in names if m in metrics]
    return " / ".join(one(m) for m in (shown if task == "hate_speech" else shown[:1]))


def format_table(rows: dict, task_names) -> str:
    """rows: {model: {task: metrics}} -> Markdown; a missing run shows as `-`."""
    header = "| Model | " + " | ".join(TASK_TITLES.get(t, t) for t in task_names) + " |"
    rule = "|---|" + "---:|" * len(task_names)
    lines = [header, rule]
    for model, by_task in rows.items():
        cells = [format_cell(t, by_task[t]) if t in by_task else "-" for t in task_names]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_leaderboard(task_names, data_root, init_checkpoints, output_dir, vocab=None,
                  config_file=None, overrides=(), model_config=None, seeds=(), **flag_values):
    """Fine-tune every model on every task; returns {model: {task: metrics}}."""
    storage.check_writable(output_dir)
    rows = {}
    for checkpoint in init_checkpoints or [RANDOM]:
        name = model_name(checkpoint)
        init = None if checkpoint == RANDOM else checkpoint
        model_vocab = vocab or (init if init and storage.isdir(init) else None)
        rows[name] = {}
        for task in task_names:
            spec = tasks.get_task(task)
            cfg = finetune.resolve_config(
                config_file, overrides, model_config, task=task,
                data_dir=storage.join(data_root, task),
                output_dir=storage.join(output_dir, name.replace("/", "_"), task),
                vocab_file=model_vocab, num_train_epochs=flag_values.get("epochs"),
                learning_rate=flag_values.get("learning_rate"),
                train_batch_size=flag_values.get("batch_size"),
                eval_batch_size=flag_values.get("batch_size"),
                max_seq_length=flag_values.get("max_seq_length"))
            logging.info("leaderboard: %s on %s", name, task)
            results = finetune.finetune(cfg, spec, seeds, flag_values.get("max_train_examples"),
                                        flag_values.get("max_eval_examples"), init)
            rows[name][task] = reported(results)
    storage.makedirs(output_dir)
    storage.write_json(storage.join(output_dir, JSON_FILE), rows, newline=False)
    storage.write_text(storage.join(output_dir, TABLE_FILE), format_table(rows, task_names))
    return rows


def define_flags(fv=flags.FLAGS):
    d = dict(flag_values=fv)
    flags.DEFINE_list("tasks", ["nsmc"], f"Tasks, comma-separated: {', '.join(tasks.TASKS)}.", **d)
    flags.DEFINE_string("data_root", None, "Directory with one subdirectory per task.", **d)
    flags.DEFINE_multi_string("init_checkpoint", [], "A model to compare (repeatable); "
                              f"'{RANDOM}' for a randomly initialised one.", **d)
    flags.DEFINE_string("vocab", None, "Vocabulary (default: each checkpoint's own).", **d)
    flags.DEFINE_string("output_dir", None, "Where the runs, benchmark.md and .json go.", **d)
    flags.DEFINE_string("config", None, "JSON config (FINETUNE keys).", **d)
    flags.DEFINE_multi_string("set", [], "Config override key=value; repeatable.", **d)
    flags.DEFINE_string("model_config", None, "Architecture of random-init models.", **d)
    flags.DEFINE_list("seeds", [], "Seeds per run; several -> mean ± std.", **d)
    flags.DEFINE_float("epochs", None, "num_train_epochs.", **d)
    flags.DEFINE_float("learning_rate", None, "Peak learning rate.", **d)
    flags.DEFINE_integer("batch_size", None, "Batch size.", **d)
    flags.DEFINE_integer("max_seq_length", None, "Tokens per example.", **d)
    flags.DEFINE_integer("max_train_examples", None, "First N training examples per task.", **d)
    flags.DEFINE_integer("max_eval_examples", None, "First N eval/test examples per task.", **d)


def run_from_flags(fv):
    for flag in ("data_root", "output_dir"):
        if not fv[flag].value:
            raise finetune.FinetuneError(f"--{flag} is required")
    for task in fv.tasks:
        tasks.get_task(task)
    return run_leaderboard(
        fv.tasks, fv.data_root, fv.init_checkpoint, fv.output_dir, fv.vocab, fv.config, fv.set,
        fv.model_config, finetune.parse_seeds(fv.seeds), epochs=fv.epochs,
        learning_rate=fv.learning_rate, batch_size=fv.batch_size,
        max_seq_length=fv.max_seq_length, max_train_examples=fv.max_train_examples,
        max_eval_examples=fv.max_eval_examples)


def main(argv):
    del argv
    try:
        rows = run_from_flags(flags.FLAGS)
    except finetune.USER_ERRORS as err:
        sys.exit(f"error: {err}")
    print(format_table(rows, flags.FLAGS.tasks))


if __name__ == "__main__":
    define_flags()
    app.run(main)
