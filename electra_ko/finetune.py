"""Fine-tune ELECTRA on a Korean task: `python -m electra_ko.finetune --task nsmc ...`.

This module runs the job: config, initial checkpoint (and a collapse check on it),
encoded splits, one training run per seed with evaluation after every epoch (the best
epoch kept), outputs and the CLI. The model, its optimizer, batching and compiled steps
are in `electra_ko.classifier`.

The ELECTRA recipe: AdamW, linear warm-up over `warmup_proportion` of the steps then
linear decay to 0, layer-wise learning-rate decay (off for a randomly initialised
model), lr by model size. `--seeds 1,2,3` repeats the run and reports mean, std and best.

Layout of `--output_dir`:

    results.json     task, metrics per epoch and seed, final metrics, aggregate over seeds,
                     resolved config, identity (path + sha256) of the initial checkpoint and
                     vocab, the checkpoint's token-state spread (< 0.01: collapsed, see
                     `classifier.token_state_spread`), example counts (empty texts
                     skipped), wall time, examples/s
    predictions.tsv  the best model's predictions on the test file (when there is one)
    model/           the best model as a Hugging Face `ElectraForSequenceClassification`
                     directory, written by `electra_ko.export`: model.safetensors,
                     config.json (labels in id2label, the task under "electra_ko"),
                     tokenizer files and the vocabulary
    seed_<n>/        with several seeds: each seed's results.json and predictions.tsv
"""
import dataclasses
import json
import math
import sys
import time
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
from absl import app, flags, logging

from electra_ko import architecture, checkpoints, classifier, export, modeling, storage, tasks
from electra_ko import config as config_lib
from electra_ko import vocab as vocab_lib

MODEL_DIR = "model"
RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.tsv"
# Keys a `--model_config` file may contribute (a pretraining config holds many more): the
# architecture, and how a random init starts, so a random-init baseline starts as its
# pretrained twin did. Dropout is a training choice, not architecture: a model pretrained
# without dropout still fine-tunes with the fine-tuning config's rate.
MODEL_CONFIG_KEYS = ("model_size", "model_hparam_overrides") + tuple(
    k for k in architecture.ARCHITECTURE_KEYS if k not in architecture.DROPOUT_KEYS)
MIN_TOKEN_STATE_SPREAD = 0.01  # below: a collapsed checkpoint (see classifier.token_state_spread)


class FinetuneError(ValueError):
    """The run cannot start or go on (the message says which file, key or flag)."""


# --------------------------------------------------------------------------- checkpoints


def file_sha256(path: str) -> str:
    import hashlib
    digest = hashlib.sha256()
    with storage.open_read(path, binary=True) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_init_checkpoint(path: str, cfg) -> classifier.InitCheckpoint:
    """The encoder to fine-tune from `--init_checkpoint`, read by `checkpoints.open_checkpoint`:
    the discriminator of a TF1 checkpoint or of our pretraining run's checkpoint, the model
    of a Hugging Face directory (any ELECTRA head; only the encoder is used). An ELECTRA
    generator alone is refused; a plain masked LM (`electra_objective: false`, marked in its
    config.json) is the model itself."""
    source = checkpoints.open_checkpoint(path, cfg)
    towers = [t for t in source.towers if t.kind != checkpoints.GENERATOR or t.masked_lm]
    if not towers:
        raise FinetuneError(f"--init_checkpoint {path}: holds only a generator; fine-tuning "
                            "starts from the discriminator")
    sizes = {key: getattr(towers[0].config, key) for key in architecture.SIZE_KEYS}
    return classifier.InitCheckpoint(source.path, towers[0].tensors, sizes,
                                     file_sha256(source.identity))


def check_init_spread(cfg, init: classifier.InitCheckpoint, train: classifier.Encoded) -> float:
    """Warn loudly when the initial checkpoint's representations have collapsed."""
    encoder = modeling.ElectraEncoder(architecture.EncoderConfig.from_config(cfg), name="electra")
    encoder.build()
    classifier.assign_encoder_weights(encoder, init)
    spread = classifier.token_state_spread(encoder, train)
    if spread < MIN_TOKEN_STATE_SPREAD:
        logging.warning(
            "--init_checkpoint %s looks COLLAPSED: its token states barely differ from one "
            "token to the next (spread %.2g; healthy encoders > %g), so fine-tuning will "
            "stay at chance. Its pretraining most likely settled on a constant "
            "discriminator (disc_auc ~0.5 in its TensorBoard logs): pretrain longer, or "
            "with a lower learning_rate / longer num_warmup_steps.",
            init.path, spread, MIN_TOKEN_STATE_SPREAD)
    return spread


# --------------------------------------------------------------------------- config


def resolve_config(config_file=None, overrides=(), model_config=None, **values):
    """The FINETUNE config: --config <- --model_config <- --set <- flags. The initial
    checkpoint's architecture is applied later, by `finetune` (its weights fix it)."""
    hparams = None
    if model_config:
        data = config_lib.read_json_file(model_config)
        hparams = json.dumps({k: v for k, v in data.items() if k in MODEL_CONFIG_KEYS})
    return config_lib.load_config(config_lib.FINETUNE, config_file, overrides, hparams, **values)


def random_init_recipe(cfg):
    """Layer-wise decay off: it keeps pretrained lower layers close to their start, but a
    random encoder has nothing to keep, and scaling its lower layers' rate down by
    decay ** (L + 2) only slows it (4 layers, quickstart sample, 190 steps at 3e-4: train
    loss 0.63 with decay 0.8, 0.01 without)."""
    return cfg.replace(layerwise_lr_decay=1.0)


def recipe_for_checkpoint(cfg, init):
    """Size-dependent defaults (learning rate, layer-wise decay) follow the checkpoint's
    architecture when it is one of our sizes and no model_size was given: a tiny
    checkpoint fine-tunes with tiny's recipe, not with the default size's."""
    size = architecture.size_of(init.sizes)
    if "model_size" in cfg.explicit or size in (None, cfg.model_size):
        return cfg
    logging.info("--init_checkpoint %s has the %s architecture: fine-tuning defaults of %s",
                 init.path, size, size)
    return cfg.with_model_size(size)


def check_vocab_size(cfg, tokenizer, init):
    if init is not None and init.sizes["vocab_size"] != tokenizer.vocab_size:
        raise FinetuneError(
            f"--init_checkpoint {init.path} has {init.sizes['vocab_size']} word embeddings but "
            f"--vocab {cfg.vocab_file} has {tokenizer.vocab_size} tokens: use the vocabulary "
            "the model was pretrained with")


# --------------------------------------------------------------------------- training


def create_strategy(cfg):
    """The pretraining driver's strategy choice (TPU, several GPUs, else default)."""
    from electra_ko import training
    return training.create_strategy("auto", cfg=cfg)


# --------------------------------------------------------------------------- one seed


@dataclasses.dataclass
class Prepared:
    """Everything shared by the seeds: config, task, encoded splits, initial weights."""
    cfg: object
    splits: tasks.Splits
    train: classifier.Encoded
    eval: Optional[classifier.Encoded]
    test: Optional[classifier.Encoded]
    tokenizer: object
    init: Optional[classifier.InitCheckpoint]


def count_steps(num_examples, batch_size, epochs):
    batches_per_epoch = math.ceil(num_examples / batch_size)
    return batches_per_epoch, max(1, math.ceil(batches_per_epoch * epochs))


def run_seed(prepared: Prepared, seed: int, strategy, device_kind) -> dict:
    """Train one seed, evaluating after every epoch; returns its results and best outputs."""
    cfg = prepared.cfg.replace(seed=seed)
    spec = prepared.splits.spec
    batches_per_epoch, total_steps = count_steps(len(prepared.train), cfg.train_batch_size,
                                                 cfg.num_train_epochs)
    runner = classifier.Runner(cfg, spec, strategy, device_kind, total_steps, prepared.init)
    rng = np.random.RandomState(seed)
    epochs, best = [], None
    done = 0
    for epoch in range(1, math.ceil(total_steps / batches_per_epoch) + 1):
        batches = classifier.batch_order(prepared.train.features["lengths"],
                                         cfg.train_batch_size, rng)
        batches = batches[:total_steps - done]
        started = time.time()
        loss = runner.train_epoch(prepared.train, batches,
                                  f"seed {seed} epoch {epoch}")
        seconds = time.time() - started
        done += len(batches)
        examples = sum(len(b) for b in batches)
        record = {"epoch": epoch, "steps": done, "train_loss": loss,
                  "train_seconds": round(seconds, 2),
                  "train_examples_per_second": round(examples / seconds, 1)}
        if prepared.eval is not None:
            outputs = runner.predict(prepared.eval, f"seed {seed} eval {epoch}")
            record["eval"] = tasks.compute_metrics(spec, prepared.eval.labels, outputs)
            score = record["eval"][spec.main_metric]
            if best is None or score > best["score"]:
                best = {"score": score, "epoch": epoch, "weights": runner.get_weights(),
                        "eval_outputs": outputs}
        logging.info("seed %d epoch %d: %s", seed, epoch, json.dumps(record))
        epochs.append(record)
    if best is None:  # no eval file: the last epoch is the model
        best = {"epoch": epochs[-1]["epoch"], "weights": runner.get_weights(), "eval_outputs": None}
    runner.set_weights(best["weights"])
    result = {"seed": seed, "epochs": epochs, "best_epoch": best["epoch"],
              "eval": epochs[best["epoch"] - 1].get("eval")}
    test_outputs = None
    if prepared.test is not None:
        test_outputs = runner.predict(prepared.test, f"seed {seed} test")
        if prepared.test.labels is not None:
            result["test"] = tasks.compute_metrics(spec, prepared.test.labels, test_outputs)
    return {"result": result, "runner": runner, "test_outputs": test_outputs}


# --------------------------------------------------------------------------- outputs


def aggregate(results: Sequence[dict], split: str) -> dict:
    """{metric: mean, std (sample, 0 for one seed), best, values} over seeds."""
    scored = [r[split] for r in results if r.get(split)]
    if not scored:
        return {}
    summary = {}
    for metric in scored[0]:
        values = np.array([s[metric] for s in scored], dtype=np.float64)
        summary[metric] = {"mean": float(values.mean()),
                           "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                           "best": float(values.max()), "values": values.tolist()}
    return summary


def prediction_frame(spec: tasks.TaskSpec, examples: tasks.Examples, outputs) -> pd.DataFrame:
    """One row per test example: its file line, prediction, [label], text(s)."""
    frame = pd.DataFrame({"line": examples.line_numbers})
    if spec.task_type == tasks.REGRESSION:
        frame["prediction"] = np.round(outputs[:, 0], 4)
    else:
        probabilities = tf.nn.softmax(outputs, axis=-1).numpy()
        frame["prediction"] = [spec.labels[i] for i in outputs.argmax(-1)]
        frame["probability"] = np.round(probabilities.max(-1), 4)
    if examples.labels is not None:
        frame["label"] = (examples.labels if spec.task_type == tasks.REGRESSION
                          else [spec.labels[i] for i in examples.labels])
    frame[spec.text_a] = examples.text_a
    if spec.text_b:
        frame[spec.text_b] = examples.text_b
    return frame


def write_predictions(path, spec, examples, outputs):
    with storage.atomic_writer(path) as f:
        prediction_frame(spec, examples, outputs).to_csv(f, sep="\t", index=False)


def task_record(cfg, spec: tasks.TaskSpec) -> dict:
    """What a fine-tuned model's config.json records of its task, under "electra_ko" (the
    labels are in id2label, the casing in tokenizer_config.json)."""
    return {"task": spec.name, "task_type": spec.task_type,
            "text_a_column": spec.text_a, "text_b_column": spec.text_b,
            "label_column": spec.label, "max_seq_length": cfg.max_seq_length}


def save_model(model_dir, model: classifier.SequenceClassifier, cfg, spec) -> str:
    """The model as a Hugging Face `ElectraForSequenceClassification` directory, written by
    the exporter (weights, config.json, tokenizer files, vocabulary); returns the weights path."""
    labels = None if spec.task_type == tasks.REGRESSION else tuple(spec.labels)
    tower = checkpoints.tower_from_model(checkpoints.CLASSIFIER, model, labels)
    export.write_huggingface(tower, cfg.vocab_file, model_dir, cfg.max_seq_length,
                             {"electra_ko": task_record(cfg, spec)})
    return storage.join(model_dir, checkpoints.HF_SAFETENSORS)


def write_json(path, data):
    """results.json (no final newline, as it always was; values JSON cannot hold as text)."""
    storage.write_json(path, data, newline=False, default=str)


# --------------------------------------------------------------------------- driver


def example_limit(flag: str, value: Optional[int]) -> Optional[int]:
    """A `--max_*_examples` value as `tasks.load_splits` takes it: 0 (or None) = all."""
    if value is not None and value < 0:
        raise FinetuneError(f"--{flag} must be >= 0 (0 = all examples), got {value}")
    return value or None


def prepare(cfg, spec: tasks.TaskSpec, tokenizer, init, max_train_examples=None,
            max_eval_examples=None) -> Prepared:
    splits = tasks.load_splits(spec, cfg.data_dir,
                               example_limit("max_train_examples", max_train_examples),
                               example_limit("max_eval_examples", max_eval_examples))
    for name, count in splits.empty_counts().items():
        if count:
            logging.warning("%s: skipped %d example(s) with an empty text", name, count)
    encode = lambda split: split and classifier.encode_split(  # noqa: E731
        tokenizer, split, cfg.max_seq_length)
    return Prepared(cfg, splits, encode(splits.train), encode(splits.eval), encode(splits.test),
                    tokenizer, init)


def recorded_config(cfg, init) -> dict:
    """The config for results.json, without the random-start key a checkpoint overrides:
    its weights, not `position_embedding_init`, set the position embeddings."""
    recorded = cfg.to_dict()
    if init is not None:
        recorded.pop("position_embedding_init")
    return recorded


def finetune(cfg, spec: tasks.TaskSpec, seeds: Sequence[int] = (), max_train_examples=None,
             max_eval_examples=None, init_checkpoint=None, command=None) -> dict:
    """Run every seed, write the outputs; returns the results.json content."""
    started = time.time()
    if not cfg.output_dir:
        raise FinetuneError("--output_dir is required")
    storage.check_writable(cfg.output_dir)
    storage.remove_stale_temporaries(cfg.output_dir, [storage.STAGING_TEMPORARIES])
    if not cfg.vocab_file:
        raise FinetuneError("--vocab is required (the vocabulary the model was pretrained with)")
    tokenizer = vocab_lib.load_tokenizer(cfg.vocab_file)
    init = load_init_checkpoint(init_checkpoint, cfg) if init_checkpoint else None
    if init is None:
        logging.warning("no --init_checkpoint: fine-tuning a RANDOMLY INITIALISED %s model "
                        "(a baseline, not a pretrained ELECTRA), without layer-wise "
                        "learning-rate decay", cfg.model_size)
        cfg = random_init_recipe(cfg)
    else:
        cfg = recipe_for_checkpoint(cfg.replace(**{k: v for k, v in init.sizes.items()
                                                   if v is not None}), init)
    check_vocab_size(cfg, tokenizer, init)
    cfg = cfg.replace(vocab_size=tokenizer.vocab_size, init_checkpoint=init_checkpoint)
    prepared = prepare(cfg, spec, tokenizer, init, max_train_examples, max_eval_examples)
    spread = check_init_spread(cfg, init, prepared.train) if init else None
    spec = prepared.splits.spec
    strategy, device_kind = create_strategy(cfg)
    seeds = list(seeds) or [cfg.seed]
    # written aside (`out` is a local folder) and published at the end, results.json last:
    # a killed re-run never leaves a new model beside old results (and gs:// outputs are
    # uploaded from there)
    with storage.staged_output(cfg.output_dir, last=(RESULTS_FILE,)) as out:
        runs, best = run_seeds(prepared, seeds, strategy, device_kind, out)
        weights_path = save_model(storage.join(out, MODEL_DIR), best["runner"].model, cfg, spec)
        model_record = {"path": storage.final_path(weights_path, out, cfg.output_dir),
                        "sha256": file_sha256(weights_path)}
        if best["test_outputs"] is not None:
            write_predictions(storage.join(out, PREDICTIONS_FILE), spec, prepared.splits.test,
                              best["test_outputs"])
        results = results_record(cfg, spec, prepared, init, spread, tokenizer, runs, best,
                                 model_record, time.time() - started, command)
        write_json(storage.join(out, RESULTS_FILE), results)
    return results


def run_seeds(prepared: Prepared, seeds, strategy, device_kind, out):
    """Train every seed (writing each one's results under `out`/seed_N when there are
    several); returns (their results, the run of the best eval score)."""
    spec = prepared.splits.spec
    runs, best_run = [], None
    for seed in seeds:
        run = run_seed(prepared, seed, strategy, device_kind)
        runs.append(run["result"])
        if len(seeds) > 1:
            seed_dir = storage.join(out, f"seed_{seed}")
            storage.makedirs(seed_dir)
            write_json(storage.join(seed_dir, RESULTS_FILE), run["result"])
            if run["test_outputs"] is not None:
                write_predictions(storage.join(seed_dir, PREDICTIONS_FILE), spec,
                                  prepared.splits.test, run["test_outputs"])
        score = (run["result"]["eval"] or {}).get(spec.main_metric, -math.inf)
        if best_run is None or score > best_run[0]:
            best_run = (score, run)
    return runs, best_run[1]


def results_record(cfg, spec, prepared, init, spread, tokenizer, runs, best, model_record,
                   wall, command) -> dict:
    """The results.json content."""
    train_seconds = sum(e["train_seconds"] for r in runs for e in r["epochs"])
    train_examples = sum(e["train_examples_per_second"] * e["train_seconds"]
                         for r in runs for e in r["epochs"])
    return {
        "task": spec.name, "task_type": spec.task_type, "main_metric": spec.main_metric,
        "labels": list(spec.labels) if spec.labels else None,
        "seeds": runs, "best_seed": best["result"]["seed"],
        "final": {"eval": best["result"]["eval"], "test": best["result"].get("test")},
        "aggregate": {"eval": aggregate(runs, "eval"), "test": aggregate(runs, "test")},
        "examples": {name: len(split) for name, split in
                     (("train", prepared.train), ("eval", prepared.eval), ("test", prepared.test))
                     if split is not None},
        "skipped_empty": prepared.splits.empty_counts(),
        "files": {"train": prepared.splits.train.path,
                  "eval": prepared.splits.eval.path if prepared.splits.eval else None,
                  "test": prepared.splits.test.path if prepared.splits.test else None},
        "init_checkpoint": ({"path": init.path, "sha256": init.sha256,
                             "token_state_spread": round(spread, 4)} if init
                            else {"path": None, "random_init": True}),
        "vocab": {"path": cfg.vocab_file, "sha256": tokenizer.vocab_sha256,
                  "size": tokenizer.vocab_size},
        "model": model_record,
        "config": recorded_config(cfg, init),
        "wall_seconds": round(wall, 2),
        "train_examples_per_second": round(train_examples / max(train_seconds, 1e-9), 1),
        "command": command,
    }


# --------------------------------------------------------------------------- CLI


def define_flags(fv=flags.FLAGS):
    """The CLI's flags, on `fv` (the global FLAGS for `python -m`, a fresh set in tests)."""
    d, default = dict(flag_values=fv), {key: spec.default for key, spec in config_lib.FINETUNE.items()}
    flags.DEFINE_enum("task", None, list(tasks.TASK_NAMES), "Task to fine-tune on.", **d)
    flags.DEFINE_bool("list_keys", False, "Print every config key with its default and doc.", **d)
    flags.DEFINE_string("data_dir", None, "Directory holding the task's files.", **d)
    flags.DEFINE_string("init_checkpoint", None, "Pretrained discriminator: a Hugging Face "
                        "ELECTRA directory (ours included), a pretraining model_dir of ours (its "
                        "newest checkpoint) or MODEL_DIR/ckpt-<step>, or a google-research TF1 "
                        "checkpoint. Absent: random initialisation (a baseline).", **d)
    flags.DEFINE_string("vocab", None, "Vocab dir or vocab.txt the model was pretrained with "
                        "(default: the --init_checkpoint directory's, or the one a pretraining "
                        "run's config.json names).", **d)
    flags.DEFINE_string("output_dir", None, "Where results.json, predictions.tsv and model/ go.", **d)
    flags.DEFINE_string("config", None, "JSON config (FINETUNE keys, google-research names).", **d)
    flags.DEFINE_multi_string("set", [], "Config override key=value (JSON value); repeatable.", **d)
    flags.DEFINE_string("model_config", None, "Config whose architecture keys (model_size, "
                        "hidden_size, ...) size a randomly initialised model, e.g. "
                        "configs/tiny.json.", **d)
    flags.DEFINE_integer("max_train_examples", 0, "Use the first N training examples "
                         "(0 = all).", **d)
    flags.DEFINE_integer("max_eval_examples", 0, "Use the first N eval and test examples "
                         "(0 = all).", **d)
    flags.DEFINE_float("epochs", None, f"num_train_epochs (default {default['num_train_epochs']:g}).",
                       **d)
    flags.DEFINE_float("learning_rate", None, "Peak learning rate (default by model size).", **d)
    flags.DEFINE_integer("batch_size", None,
                         f"train_batch_size (default {default['train_batch_size']}).", **d)
    flags.DEFINE_integer("max_seq_length", None, "Tokens per example (default: the model "
                         "size's).", **d)
    flags.DEFINE_list("seeds", [], "Comma-separated seeds; several -> mean, std and best.", **d)
    flags.DEFINE_list("train_file", [], "Training file(s) relative to --data_dir, overriding "
                      "the task's default (comma-separated to concatenate).", **d)
    flags.DEFINE_string("eval_file", None, "Eval file ('' for none).", **d)
    flags.DEFINE_string("test_file", None, "Test file ('' for none).", **d)
    flags.DEFINE_string("text_a_column", None, "custom: column of the (first) text.", **d)
    flags.DEFINE_string("text_b_column", None, "custom: column of the second text, if pairs.", **d)
    flags.DEFINE_string("label_column", None, "custom: label (or score) column.", **d)
    flags.DEFINE_enum("task_type", tasks.CLASSIFICATION, [tasks.CLASSIFICATION, tasks.REGRESSION],
                      "custom: classification (labels from the training file) or regression.", **d)


def task_from_flags(fv) -> tasks.TaskSpec:
    if fv.task == "custom":
        return tasks.custom_task(fv.text_a_column, fv.label_column, fv.task_type,
                                 fv.text_b_column, ",".join(fv.train_file) or None, fv.eval_file,
                                 fv.test_file).with_files(train_files=fv.train_file)
    return tasks.get_task(fv.task).with_files(fv.train_file, fv.eval_file, fv.test_file)


def default_vocab(fv):
    """--vocab, else the vocabulary stored next to the initial checkpoint, or the one a
    pretraining run's config.json names."""
    if fv.vocab:
        return fv.vocab
    location = fv.init_checkpoint and checkpoints.locate(fv.init_checkpoint)
    return location.vocab() if location else None


def parse_seeds(values) -> list:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise FinetuneError(f"--seeds must be comma-separated integers, got {','.join(values)}") \
            from None


def run_from_flags(fv, command=None) -> dict:
    if not fv.task:
        raise FinetuneError("--task is required")
    spec = task_from_flags(fv)
    if fv.init_checkpoint and not checkpoints.exists(fv.init_checkpoint):
        raise FinetuneError(f"--init_checkpoint {fv.init_checkpoint} not found (expected a "
                            "Hugging Face folder, a pretraining model_dir or a TF checkpoint)")
    if fv.model_config and fv.init_checkpoint:
        logging.warning("--model_config %s ignored: the architecture comes from "
                        "--init_checkpoint %s", fv.model_config, fv.init_checkpoint)
    cfg = resolve_config(fv.config, fv.set, fv.model_config, task=spec.name,
                         data_dir=fv.data_dir, output_dir=fv.output_dir,
                         vocab_file=default_vocab(fv), num_train_epochs=fv.epochs,
                         learning_rate=fv.learning_rate, train_batch_size=fv.batch_size,
                         eval_batch_size=fv.batch_size, max_seq_length=fv.max_seq_length)
    return finetune(cfg, spec, parse_seeds(fv.seeds), fv.max_train_examples,
                    fv.max_eval_examples, fv.init_checkpoint, command)


def format_summary(results) -> str:
    lines = [f"task {results['task']}: best seed {results['best_seed']}"]
    for split in ("eval", "test"):
        metrics = results["final"].get(split)
        if metrics:
            lines.append(f"{split} " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))
        if len(results["seeds"]) > 1 and results["aggregate"][split]:
            lines.append(f"{split} over {len(results['seeds'])} seeds: " + " ".join(
                f"{k}={s['mean']:.2f}±{s['std']:.2f} (best {s['best']:.2f})"
                for k, s in results["aggregate"][split].items()))
    return "\n".join(lines)


# Bad input the CLIs report as one line instead of a traceback.
USER_ERRORS = (FinetuneError, tasks.TaskError, config_lib.ConfigError, vocab_lib.VocabError,
               checkpoints.CheckpointError, storage.OutputError)


def main(argv):
    del argv
    if flags.FLAGS.list_keys:
        print(config_lib.describe_keys(config_lib.FINETUNE))
        return
    try:
        results = run_from_flags(flags.FLAGS, command=" ".join(sys.argv))
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    print(format_summary(results))
    print(f"results: {storage.join(flags.FLAGS.output_dir, RESULTS_FILE)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
