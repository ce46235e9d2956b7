"""ELECTRA pretraining driver: `python -m electra_ko.pretrain --config configs/base.json`.

One code path for a Cloud TPU, one or several GPUs, several machines and a laptop CPU:
the strategy is picked from the flags and the environment, the input is distributed
per host, and one `tf.function` runs `iterations_per_loop` steps on the device before
the host prints a line like

    train step=400/1000 loss=8.142 mlm_loss=6.213 mlm_acc=0.1234 sampled_acc=0.1012 disc_loss=0.0412
      disc_acc=0.9301 disc_precision=0.6 disc_recall=0.4 disc_auc=0.8123 lr=0.0005 seq_per_s=31.5 eta=0:05:10

(one line on stdout, 4 significant digits, no log prefix: `grep '^train step='`) and
writes the full values as TensorBoard summaries.

Layout of `model_dir` (local or gs://):

    config.json              resolved config of the run (also printed at start)
    ckpt-<step>.*, checkpoint  training state: model, optimizer slots, global step and the
                             input iterator position (exact resume)
    train/, eval/            TensorBoard event files
    eval_results.txt         `--do_eval` metrics
    discriminator/, generator/  the final models, each with `model.weights.h5`,
                             `config.json` and the vocabulary files (fine-tuning loads
                             `discriminator/` alone)

Resume: re-running the same command continues from the newest `ckpt-<step>`; raising
`num_train_steps` continues a finished run. SIGTERM (TPU preemption) saves a checkpoint
before exiting. A NaN/Inf loss stops the run; the newest checkpoint is the last good one.
"""
import dataclasses
import datetime
import json
import os
import signal
import sys
import tempfile
import time
from typing import Callable, Dict

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from electra_ko import config as config_lib  # noqa: E402
from electra_ko import data as data_lib  # noqa: E402
from electra_ko import masking, modeling  # noqa: E402
from electra_ko import optimization, storage  # noqa: E402
from electra_ko import vocab as vocab_lib  # noqa: E402


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, ...); the message says why."""


# --------------------------------------------------------------------------- strategy

def create_strategy(kind="auto", tpu=None, cfg=None):
    """(strategy, device kind "TPU"/"GPU"/"CPU") for `--strategy` and `--tpu`.

    auto: a TPU when `--tpu` or `use_tpu` is given, a multi-worker strategy when
    TF_CONFIG is set, MirroredStrategy over several GPUs, else the default strategy.
    """
    tpu = tpu or (cfg.tpu_name if cfg is not None and cfg.use_tpu else None)
    if kind == "auto":
        if tpu or (cfg is not None and cfg.use_tpu):
            kind = "tpu"
        elif os.environ.get("TF_CONFIG"):
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "tpu":
        return _tpu_strategy(tpu or "local", cfg), "TPU"
    if kind == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif kind == "default":
        strategy = tf.distribute.get_strategy()
    else:
        raise ValueError(f"unknown --strategy {kind!r}")
    device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    return strategy, device


def _tpu_strategy(name, cfg):
    zone = cfg.tpu_zone if cfg is not None else None
    project = cfg.gcp_project if cfg is not None else None
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=name, zone=zone, project=project)
    if name != "local":
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


# ---------------------------------------------------------------------- device metrics

class DeviceSums:
    """Per-step statistics summed on the device over a loop and over replicas.

    Each replica adds its tensors into sync-on-read variables, so no cross-replica
    traffic happens inside the loop; reading them on the host sums the replicas.
    """

    def __init__(self, shapes: Dict[str, tuple]):
        self.variables = {
            name: tf.Variable(tf.zeros(shape, tf.float32), trainable=False,
                              synchronization=tf.VariableSynchronization.ON_READ,
                              aggregation=tf.VariableAggregation.SUM, name=f"sum_{name}")
            for name, shape in shapes.items()}

    def add(self, sums):
        for name, value in sums.items():
            self.variables[name].assign_add(tf.cast(value, tf.float32))

    def reset(self):
        for variable in self.variables.values():
            variable.assign(tf.zeros_like(variable))

    def read(self):
        return {name: variable.read_value().numpy() for name, variable in self.variables.items()}


# ----------------------------------------------------------------------------- trainer

@dataclasses.dataclass
class Task:
    """What the trainer trains, independent of the model family.

    loss_fn(features, seed, training) -> (this replica's share of the global-batch loss,
    so that the replicas' losses add up to it; dict of per-replica tensors to sum over
    replicas and steps, shaped as `sum_shapes` says). summarize(sums) -> dict of
    host-side metrics from those sums.
    """
    model: tf.Module
    loss_fn: Callable
    summarize: Callable
    sum_shapes: Dict[str, tuple]


# Sums the trainer adds itself, next to the task's.
_TRAINER_SUMS = {"loss": (), "steps": (), "grad_norm": (), "nonfinite": ()}


class Trainer:
    """Runs `iterations_per_loop` steps per `tf.function` call and owns the checkpoint."""

    def __init__(self, strategy, cfg, task, make_dataset, model_dir, precision="float32",
                 data_error=lambda error: error):
        """`make_dataset(seed)` gives the distributed training input; `data_error` turns a
        `DataLossError` into the exception to raise (naming the shard).

        The input iterator is part of the checkpoint when TensorFlow can save it (the
        default strategy: CPU, one GPU), so a resumed run reads exactly the examples an
        uninterrupted one would. Distributed iterators cannot be saved in TF 2.21; then a
        resumed input is reseeded with the resume step instead (reproducible, not identical).
        """
        self.strategy, self.cfg, self.task = strategy, cfg, task
        self.model_dir, self.data_error = model_dir, data_error
        self.chief = is_chief(strategy)
        with strategy.scope():
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.optimizer = optimization.create_optimizer(cfg, precision)
            optimization.build_optimizer(self.optimizer, task.model.trainable_variables)
            start = _checkpoint_step(model_dir)
            self.iterator = iter(make_dataset(cfg.seed))
            if not isinstance(self.iterator, tf.__internal__.tracking.Trackable):
                self.iterator = iter(make_dataset(cfg.seed + start))
            self.sums = DeviceSums(dict(task.sum_shapes, **_TRAINER_SUMS))
        state = dict(model=task.model, optimizer=self.optimizer, global_step=self.global_step)
        if isinstance(self.iterator, tf.__internal__.tracking.Trackable):
            state["train_iterator"] = self.iterator
        self.checkpoint = tf.train.Checkpoint(**state)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=cfg.keep_checkpoint_max,
            step_counter=self.global_step, checkpoint_name="ckpt")
        # The forward/backward pass is one XLA cluster on a single replica. With several,
        # the objective all-reduces token counts, which a nested tf.function cannot do
        # (merge_call); TPUs compile the whole step anyway. The optimizer update stays
        # outside XLA: compiled with it, a tiny step took 21 instead of 1.1 CPU-s on CPU.
        self._grad_fn = (tf.function(self._loss_and_grads, jit_compile=cfg.jit_compile)
                         if strategy.num_replicas_in_sync == 1 else self._loss_and_grads)
        self._loop_fn = tf.function(self._train_loop)
        self._stop_requested = False

    # --- device side

    def _loss_and_grads(self, features, seed):
        variables = self.task.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, sums = self.task.loss_fn(features, seed, True)
            scaled = self.optimizer.scale_loss(tf.cast(loss, tf.float32))
        grads = tape.gradient(scaled, variables)
        return loss, sums, grads

    def _static_batch(self, features, global_batch):
        """Per-replica batches with a static shape (multi-worker input leaves it open)."""
        per_replica = global_batch // self.strategy.num_replicas_in_sync
        return {k: tf.ensure_shape(v, [per_replica] + v.shape[1:]) for k, v in features.items()}

    def _update(self, features, seed):
        """Forward, backward, clipping and optimizer update -> (loss, sums, gradient norm)."""
        loss, sums, grads = self._grad_fn(features, seed)
        scale = optimization.loss_scale(self.optimizer)
        grads, norm = optimization.reduce_and_clip(grads, self.cfg.clip_norm, scale)
        self.optimizer.apply(grads, self.task.model.trainable_variables)
        return loss, sums, norm

    def _train_step(self, features, step):
        features = self._static_batch(features, self.cfg.train_batch_size)
        loss, sums, norm = self._update(features, masking.step_seed(self.cfg.seed, step))
        self._add_sums(loss, sums, norm)

    def _add_sums(self, loss, sums, grad_norm):
        """Replica-sums of `loss` and `steps` are per-step global values; of the rest, counts."""
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        self.sums.add(dict(sums, loss=loss, steps=share, grad_norm=grad_norm * share,
                           nonfinite=1.0 - tf.cast(finite, tf.float32)))

    def _eval_step(self, features):
        features = self._static_batch(features, self.cfg.eval_batch_size)
        loss, sums = self.task.loss_fn(features, tf.constant([0, 0], tf.int64), False)
        self._add_sums(loss, sums, tf.constant(0.0))

    def _eval_loop(self, dataset):
        for features in dataset:
            self.strategy.run(self._eval_step, args=(features,))

    def _train_loop(self, num_steps):
        for _ in tf.range(num_steps):
            features = next(self.iterator)
            self.strategy.run(self._train_step, args=(features, self.global_step.read_value()))
            self.global_step.assign_add(1)

    # --- host side

    def _checkpoint_dir(self):
        """Every worker must take part in saving; non-chief ones write their (identical)
        copy to `model_dir/.worker-<id>`, which nothing reads back."""
        if self.chief:
            return self.model_dir
        return f"{self.model_dir.rstrip('/')}/.worker-{self.strategy.cluster_resolver.task_id}"

    def restore(self):
        """Continue from the newest checkpoint in model_dir, if any; returns the step."""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("restored %s at step %d", latest, int(self.global_step.numpy()))
        return int(self.global_step.numpy())

    def request_stop(self, *_):
        """Signal handler: finish the current loop, save, stop."""
        logging.warning("stop requested (SIGTERM): saving a checkpoint after this loop")
        self._stop_requested = True

    def save(self):
        path = self.manager.save(checkpoint_number=self.global_step)
        logging.info("saved checkpoint %s", path)
        return path

    def train(self, num_train_steps=None, stop_at=None):
        """Train up to `num_train_steps` (or stop early at `stop_at`); returns the step."""
        total = num_train_steps or self.cfg.num_train_steps
        end = min(total, stop_at) if stop_at else total
        step = int(self.global_step.numpy())
        writer = self._summary_writer("train")
        started, start_step = time.time(), step
        while step < end:
            next_save = (step // self.cfg.save_checkpoints_steps + 1) * self.cfg.save_checkpoints_steps
            n = min(self.cfg.iterations_per_loop, end - step, next_save - step)
            self.sums.reset()
            loop_start = time.time()
            step = self.run_steps(n)
            metrics = self._loop_metrics(step, n, time.time() - loop_start)
            eta = (time.time() - started) / (step - start_step) * (total - step)
            print(f"train step={step}/{total} {format_metrics(metrics)} "
                  f"eta={datetime.timedelta(seconds=round(eta))}", flush=True)
            write_summaries(writer, metrics, step)
            if step % self.cfg.save_checkpoints_steps == 0 or step == end or self._stop_requested:
                self.save()
            if self._stop_requested:
                break
        return step

    def run_steps(self, num_steps):
        """Run `num_steps` steps in one on-device loop; returns the global step. No
        metrics, summaries or checkpoints (`train` adds those): benchmarks time this."""
        try:
            self._loop_fn(tf.constant(num_steps, tf.int32))
        except tf.errors.DataLossError as e:
            raise self.data_error(e) from None
        return int(self.global_step.numpy())

    def trace_counts(self):
        """How often each step function was traced so far: more than 1 means retracing."""
        functions = {"loop": self._loop_fn, "loss_and_grads": self._grad_fn}
        return {name: fn.experimental_get_tracing_count() for name, fn in functions.items()
                if hasattr(fn, "experimental_get_tracing_count")}

    def _loop_metrics(self, step, n, seconds):
        sums = self.sums.read()
        if sums["nonfinite"] > 0:
            raise TrainingError(
                f"loss became NaN or Inf between steps {step - n} and {step}; stopping. "
                f"The last good checkpoint is {self.manager.latest_checkpoint or '(none)'}. "
                "Lower learning_rate, check the data or use mixed_precision=float32.")
        metrics = self._summarize(sums)
        metrics["lr"] = float(self.optimizer.learning_rate.numpy())
        metrics["seq_per_s"] = n * self.cfg.train_batch_size / seconds
        return metrics

    def _summarize(self, sums):
        metrics = {"loss": float(sums["loss"] / sums["steps"])}
        if sums["grad_norm"]:
            metrics["grad_norm"] = float(sums["grad_norm"] / sums["steps"])
        metrics.update(self.task.summarize(sums))
        return metrics

    def evaluate(self, dataset):
        """Metrics over one pass of a finite distributed dataset."""
        self.sums.reset()
        try:
            tf.function(self._eval_loop)(dataset)
        except tf.errors.DataLossError as e:
            raise self.data_error(e) from None
        metrics = self._summarize(self.sums.read())
        step = int(self.global_step.numpy())
        print(f"eval step={step} {format_metrics(metrics)}", flush=True)
        write_summaries(self._summary_writer("eval"), metrics, step)
        return metrics

    def _summary_writer(self, name):
        if not self.chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.model_dir, name))


def _checkpoint_step(model_dir):
    """The global step of the newest checkpoint in model_dir (0 without one)."""
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        return 0
    return int(tf.train.load_checkpoint(latest).get_tensor("global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def format_metrics(metrics):
    """`name=value` pairs (4 significant digits) for the greppable progress line on stdout,
    which goes there without absl's log prefix; TensorBoard keeps the full values."""
    return " ".join(f"{name}={value:.4g}" for name, value in metrics.items())


def write_summaries(writer, metrics, step):
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
    writer.flush()


# ------------------------------------------------------------------------ ELECTRA task

AUC_BINS = 200  # histogram resolution of the discriminator AUC
_GLOBAL_METRICS = ("mlm_loss", "mlm_accuracy", "sampled_token_accuracy", "disc_loss",
                   "disc_accuracy", "disc_precision", "disc_recall")
_LOG_NAMES = {"mlm_accuracy": "mlm_acc", "sampled_token_accuracy": "sampled_acc",
              "disc_accuracy": "disc_acc"}


def electra_task(cfg, model, objective):
    """`Task` for `masking.pretraining_losses`: its global-batch metrics are averaged
    over steps, and the discriminator's per-token probabilities feed an AUC histogram."""
    names = [n for n in _GLOBAL_METRICS if objective.electra_objective or not n.startswith(
        ("disc", "sampled"))]
    shapes = {name: () for name in names}
    if objective.electra_objective:
        shapes.update(auc_positive=(AUC_BINS,), auc_negative=(AUC_BINS,))

    def loss_fn(features, seed, training):
        loss, metrics = masking.pretraining_losses(model, features, seed, objective, training)
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        sums = {name: metrics[name] * share for name in names}
        if objective.electra_objective:
            sums.update(auc_histograms(metrics["disc_probs"], metrics["disc_labels"],
                                       metrics["disc_weights"]))
        return loss, sums

    def summarize(sums):
        metrics = {_LOG_NAMES.get(n, n): float(sums[n] / sums["steps"]) for n in names}
        if objective.electra_objective:
            metrics["disc_auc"] = auc_from_histograms(sums["auc_positive"], sums["auc_negative"])
        return metrics

    return Task(model, loss_fn, summarize, shapes)


def auc_histograms(probs, labels, weights):
    """Weighted counts of positive and negative tokens per probability bin."""
    bins = tf.clip_by_value(tf.cast(tf.cast(probs, tf.float32) * AUC_BINS, tf.int32), 0,
                            AUC_BINS - 1)
    bins, labels, weights = (tf.reshape(t, [-1]) for t in (bins, labels, weights))
    positive = tf.math.unsorted_segment_sum(weights * labels, bins, AUC_BINS)
    negative = tf.math.unsorted_segment_sum(weights * (1.0 - labels), bins, AUC_BINS)
    return {"auc_positive": positive, "auc_negative": negative}


def auc_from_histograms(positive, negative):
    """ROC AUC from binned scores: P(score of a positive > a negative), ties count half."""
    total_pos, total_neg = float(positive.sum()), float(negative.sum())
    if not total_pos or not total_neg:
        return float("nan")
    negatives_below = 0.0
    area = 0.0
    for pos, neg in zip(positive, negative):
        area += pos * (negatives_below + 0.5 * neg)
        negatives_below += neg
    return float(area / (total_pos * total_neg))


def export_towers(model, vocab_path, output_dir, max_seq_length):
    """`output_dir/discriminator` and `output_dir/generator` as Hugging Face directories
    (weights + config + vocab), so fine-tuning can load the discriminator alone."""
    from electra_ko import export  # local: needs safetensors, only at the end
    parts = ["discriminator", "generator"] if model.electra_objective else ["generator"]
    written = []
    for part in parts:
        tower = export.tower_from_pretrainer(model, part)
        written.append(_write_to(output_dir, part, lambda local: export.write_huggingface(
            tower, vocab_path, local, max_seq_length)))
    return written


def _write_to(output_dir, name, write):
    """Run `write(local_dir)` for output_dir/name, uploading afterwards when it is on gs://."""
    target = os.path.join(output_dir, name) if "://" not in output_dir else output_dir + "/" + name
    if "://" not in output_dir:
        write(target)
        return target
    with tempfile.TemporaryDirectory() as local:
        write(local)
        tf.io.gfile.makedirs(target)
        for file in os.listdir(local):
            tf.io.gfile.copy(os.path.join(local, file), target + "/" + file, overwrite=True)
    return target


# ----------------------------------------------------------------------------- driver

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("config", None, "JSON config file (google-research/electra keys)")
    flags.DEFINE_string("data_dir", None, "base directory: vocab.txt, pretrain_tfrecords/, models/")
    flags.DEFINE_string("pretrain_tfrecords", None, "directory of the shards + manifest.json")
    flags.DEFINE_string("eval_tfrecords", None, "held-out shards for --do_eval "
                        "(default: the last training shard, then left out of training)")
    flags.DEFINE_string("model_dir", None, "checkpoints, summaries and the final models")
    flags.DEFINE_string("vocab_file", None, "vocab.txt or a vocab directory")
    flags.DEFINE_string("corpus", None, "raw corpus: build vocab and shards first if missing")
    flags.DEFINE_string("tpu", None, "Cloud TPU name, or 'local' on a TPU VM")
    flags.DEFINE_enum("strategy", "auto", ["auto", "tpu", "mirrored", "multi_worker", "default"],
                      "distribution strategy")
    flags.DEFINE_multi_string("set", [], "config override key=value (repeatable)")
    flags.DEFINE_string("hparams", None, "JSON text or file of config overrides")
    flags.DEFINE_bool("dry_run", False, "validate config and data, print sizes, do not train")
    flags.DEFINE_bool("deterministic", False, "fixed seeds and deterministic ops (CPU resume tests)")
    flags.DEFINE_bool("do_eval", None, "evaluate MLM and discriminator metrics at the end")
    flags.DEFINE_integer("stop_at_step", None, "stop (with a checkpoint) at this step; "
                         "re-running continues", lower_bound=1)


def resolve_config():
    """Config from the file, --hparams, --set and the path flags (validated)."""
    paths = dict(data_dir=FLAGS.data_dir, pretrain_tfrecords=FLAGS.pretrain_tfrecords,
                 model_dir=FLAGS.model_dir, vocab_file=FLAGS.vocab_file, corpus=FLAGS.corpus,
                 do_eval=FLAGS.do_eval)
    cfg = config_lib.load_config(config_lib.PRETRAIN, FLAGS.config, FLAGS.set, FLAGS.hparams,
                                 **paths)
    for key in ("vocab_file", "model_dir"):
        if not getattr(cfg, key):
            raise config_lib.ConfigError(f"config key {key!r} is not set: give --{key} or "
                                         "--data_dir")
    return cfg


def prepare_from_corpus(cfg):
    """Run the vocab and data stages for `cfg.corpus` when their outputs are missing.

    The data stage itself skips complete shards after checking its manifest (vocab
    sha256, sequence length, seed) and refuses shards built otherwise.
    """
    from electra_ko import build_data  # local: only the one-command path needs it
    if not cfg.pretrain_tfrecords:
        raise config_lib.ConfigError("config key 'corpus' needs 'pretrain_tfrecords' or "
                                     "'data_dir' for the shards it builds")
    if storage.exists(cfg.vocab_file):
        logging.info("vocab stage: %s exists, skipped", cfg.vocab_file)
    else:
        vocab_dir = cfg.vocab_file.rsplit("/", 1)[0] if "/" in cfg.vocab_file else "."
        vocab_lib.build_vocab([cfg.corpus], vocab_dir, vocab_size=cfg.vocab_size or 32000,
                              num_unused=cfg.num_unused, do_lower_case=cfg.do_lower_case,
                              limit_alphabet=cfg.limit_alphabet, min_frequency=cfg.min_frequency)
    argv = ["--corpus", cfg.corpus, "--vocab", cfg.vocab_file, "--output_dir",
            cfg.pretrain_tfrecords, "--num_shards", str(cfg.num_shards),
            "--max_seq_length", str(cfg.max_seq_length), "--seed", str(cfg.seed)]
    build_data.build(build_data.parse_args(argv), "python -m electra_ko.pretrain (corpus stage)")


def with_vocab(cfg):
    """(cfg with vocab_size from the vocab, tokenizer); a set vocab_size must agree."""
    tokenizer = vocab_lib.load_tokenizer(cfg.vocab_file)
    if cfg.vocab_size not in (None, tokenizer.vocab_size):
        raise config_lib.ConfigError(f"config key 'vocab_size' is {cfg.vocab_size} but "
                                     f"{cfg.vocab_file} holds {tokenizer.vocab_size} tokens")
    return cfg.replace(vocab_size=tokenizer.vocab_size), tokenizer


def checked_shards(cfg, tokenizer, directory):
    """(shard files, compression) of `directory` after checking its manifest."""
    manifest = data_lib.read_manifest(directory)
    data_lib.check_manifest(manifest, directory, tokenizer.vocab_sha256, tokenizer.vocab_size,
                            cfg.max_seq_length)
    return data_lib.shard_files(directory), data_lib.compression_of(manifest)


def split_eval_shards(files, eval_dir, do_eval):
    """(training shards, held-out shards): the last shard is held out when no eval dir is given."""
    if not do_eval or eval_dir:
        return files, None
    if len(files) < 2:
        raise data_lib.DataError("--do_eval without --eval_tfrecords holds out the last shard, "
                                 "but there is only one: give --eval_tfrecords")
    return files[:-1], files[-1:]


def parameter_counts(model):
    counts = {"total": modeling.count_params(model.trainable_variables),
              "embeddings": modeling.count_params(model.embeddings.trainable_variables),
              "discriminator": modeling.count_params(model.discriminator.trainable_variables)}
    if model.electra_objective:
        counts["generator"] = modeling.count_params(model.generator.trainable_variables)
    return counts


def write_config(cfg, model_dir):
    tf.io.gfile.makedirs(model_dir)
    text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    with tf.io.gfile.GFile(os.path.join(model_dir, "config.json") if "://" not in model_dir
                           else model_dir + "/config.json", "w") as f:
        f.write(text + "\n")
    return text


def run(cfg, strategy_kind="auto", tpu=None, dry_run=False, deterministic=False,
        eval_dir=None, stop_at=None):
    """The whole driver after flag parsing; returns the final (or dry-run) summary dict."""
    keras.utils.set_random_seed(cfg.seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    if cfg.corpus and not dry_run:
        prepare_from_corpus(cfg)
    cfg, tokenizer = with_vocab(cfg)
    shards = checked_shards(cfg, tokenizer, cfg.pretrain_tfrecords) if (
        cfg.pretrain_tfrecords and (not dry_run or tf.io.gfile.exists(cfg.pretrain_tfrecords))) \
        else None
    strategy, device = create_strategy(strategy_kind, tpu, cfg)
    precision = optimization.precision_policy(cfg.mixed_precision, device)
    keras.mixed_precision.set_global_policy(precision)
    with strategy.scope():
        model = modeling.ElectraPretrainer.from_project_config(cfg)
    counts = parameter_counts(model)
    print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    print("parameters: " + " ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(f"strategy={type(strategy).__name__} replicas={strategy.num_replicas_in_sync} "
          f"device={device} precision={precision}")
    if dry_run:
        return {"parameters": counts, "shards": len(shards[0]) if shards else 0}
    if shards is None:
        raise data_lib.DataError("no pretraining data: give --pretrain_tfrecords or --data_dir")
    write_config(cfg, cfg.model_dir)
    files, compression = shards
    train_files, eval_files = split_eval_shards(files, eval_dir, cfg.do_eval)
    objective = masking.ObjectiveConfig.from_config(cfg, tokenizer.special_ids,
                                                    _continuation_table(cfg, tokenizer))
    def make_dataset(seed):
        return data_lib.distributed_dataset(strategy, train_files, cfg.train_batch_size,
                                            cfg.max_seq_length, compression, True, seed)
    trainer = Trainer(strategy, cfg, electra_task(cfg, model, objective), make_dataset,
                      cfg.model_dir, precision,
                      data_error=lambda e: data_lib.corrupt_shard_error(files, compression, e))
    trainer.restore()
    signal.signal(signal.SIGTERM, trainer.request_stop)
    step = trainer.train(stop_at=stop_at)
    summary = {"step": step, "parameters": counts}
    if step < cfg.num_train_steps:
        return summary
    if cfg.do_eval:
        summary["eval"] = _evaluate(trainer, cfg, tokenizer, strategy, eval_dir, eval_files)
    if trainer.chief:
        summary["exported"] = export_towers(model, cfg.vocab_file, cfg.model_dir,
                                            cfg.max_seq_length)
    return summary


def _continuation_table(cfg, tokenizer):
    if not cfg.whole_word_masking:
        return None
    return masking.continuation_table(tokenizer.tokens, tokenizer.kind)


def _evaluate(trainer, cfg, tokenizer, strategy, eval_dir, eval_files):
    compression = ""
    if eval_dir:
        eval_files, compression = checked_shards(cfg, tokenizer, eval_dir)
    dataset = data_lib.distributed_dataset(strategy, eval_files, cfg.eval_batch_size,
                                           cfg.max_seq_length, compression, training=False,
                                           num_batches=cfg.num_eval_steps)
    metrics = trainer.evaluate(dataset)
    if trainer.chief:
        lines = "".join(f"{k} = {v}\n" for k, v in metrics.items())
        with tf.io.gfile.GFile(cfg.model_dir.rstrip("/") + "/eval_results.txt", "w") as f:
            f.write(lines)
    return metrics


def _build_error():
    from electra_ko import build_data
    return build_data.BuildError


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cfg = resolve_config()
        summary = run(cfg, FLAGS.strategy, FLAGS.tpu, FLAGS.dry_run, FLAGS.deterministic,
                      FLAGS.eval_tfrecords, FLAGS.stop_at_step)
    except (config_lib.ConfigError, data_lib.DataError, vocab_lib.VocabError,
            TrainingError, _build_error()) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
