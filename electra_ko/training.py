"""The TPU-style training loop, independent of what is trained (Orbit-like).

`Trainer` runs steps inside one `tf.function` on the device (`strategy.run` in a
`tf.range` loop), sums metrics on the device, and every `iterations_per_loop` steps
prints a progress line, writes TensorBoard summaries and saves numbered checkpoints
(`ckpt-<step>`). The input is a pure function of the global step (`make_dataset(step)`),
so a checkpoint holds no iterator state and resume is exact on every strategy. Device
calls last about `stop_check_secs` at most, so a SIGTERM (TPU preemption) is answered
with a checkpoint of the current step within seconds. A `Task` supplies the model, the
loss and how to summarise the metric sums; `electra_ko.pretrain` builds the ELECTRA
task and drives a run.
"""
import dataclasses
import datetime
import os
import time
from typing import Callable, Dict, Optional

import tensorflow as tf
from absl import logging

from electra_ko import config as config_lib
from electra_ko import optimization, randomness


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, ...); the message says why."""


# Exit status of a run stopped by SIGTERM (a preempted TPU) after saving its checkpoint:
# EX_TEMPFAIL, "try again": re-running the same command resumes.
EXIT_PREEMPTED = 75
CHECKPOINT_NAME = "ckpt"  # checkpoints are model_dir/ckpt-<step>.*


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
        return _tpu_strategy(tpu or "", cfg), "TPU"
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


def is_local_tpu(name):
    """True for the TPU attached to this VM ("" or "local", as TF Model Garden); any other
    name is a remote TPU or a pod slice, reached through its cluster."""
    return name in ("", "local", None)


def _tpu_strategy(name, cfg):
    zone = cfg.tpu_zone if cfg is not None else None
    project = cfg.gcp_project if cfg is not None else None
    job = {"job_name": cfg.tpu_job_name} if cfg is not None and cfg.tpu_job_name else {}
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu="local" if is_local_tpu(name) else name, zone=zone, project=project, **job)
    if not is_local_tpu(name):
        tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    strategy = tf.distribute.TPUStrategy(resolver)
    check_tpu_cores(cfg, strategy.num_replicas_in_sync)
    return strategy


def check_tpu_cores(cfg, cores):
    """`num_tpu_cores`, when given, must be the slice's: TF2 finds the cores itself, so a
    different number means the run is on another slice than the config was written for."""
    expected = cfg.num_tpu_cores if cfg is not None else None
    if expected and expected != cores:
        raise config_lib.ConfigError(f"config key 'num_tpu_cores' is {expected}, but the TPU has {cores} "
                         f"cores: fix the key (or drop it) or use the slice it names")


def is_tpu(strategy):
    return isinstance(strategy, tf.distribute.TPUStrategy)


def is_chief(strategy):
    """True on the worker that writes checkpoints, summaries and exports."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or is_tpu(strategy):
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


# ----------------------------------------------------------------------------- the step

@dataclasses.dataclass(frozen=True)
class LoopSettings:
    """What the training loop reads from a stage's config (both stages have these keys)."""
    seed: int
    train_batch_size: int
    clip_norm: float
    jit_compile: bool
    iterations_per_loop: int
    num_train_steps: int = 0
    save_checkpoints_steps: int = 0
    keep_checkpoint_max: int = 5
    stop_check_secs: float = 10.0
    eval_batch_size: int = 0

    @classmethod
    def from_config(cls, cfg, **changes):
        known = cfg.to_dict()
        values = {f.name: known[f.name] for f in dataclasses.fields(cls) if f.name in known}
        return cls(**dict(values, **changes))


@dataclasses.dataclass
class Task:
    """What the trainer trains, independent of the model family.

    loss_fn(features, seed, training) -> (this replica's share of the global-batch loss,
    so that the replicas' losses add up to it; dict of per-replica tensors to sum over
    replicas and steps, shaped as `sum_shapes` says). summarize(sums) -> dict of
    host-side metrics from those sums. after_loop(step, metrics), if given, sees each
    training loop's metrics (health checks). step_seed(base seed, global step) -> the
    [2] seed a replica's step gets (default: the same on every replica).
    `loss_syncs_replicas`: loss_fn all-reduces (ELECTRA's global token counts), so with
    several replicas it cannot run as a function of its own, compiled or not.
    """
    model: tf.Module
    loss_fn: Callable
    summarize: Callable = lambda sums: {}
    sum_shapes: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    after_loop: Optional[Callable] = None
    step_seed: Callable = randomness.step_seed
    loss_syncs_replicas: bool = True


# Sums the trainer adds itself, next to the task's.
_TRAINER_SUMS = {"loss": (), "steps": (), "grad_norm": (), "nonfinite": ()}


class TrainStep:
    """The compiled training step every stage shares, and its on-device loop.

    Each replica computes the task's loss and gradients; the gradients are summed over
    replicas and clipped by their global norm (`optimization.reduce_and_clip`), then the
    optimizer applies them. Loss, gradient norm and the task's sums are summed on the
    device (`sums`). With one replica off TPU, loss-gradients-clip is one XLA cluster
    (`jit_compile`) and the update a second: compiled together, a tiny step took 21
    instead of 1.1 CPU-s on CPU. With several replicas only each replica's loss and
    gradients are compiled (the all-reduce stays outside), when the task's loss does not
    sync the replicas itself; a TPU compiles it all itself.

    `run_steps(iterator, n)` runs n steps in one device call when batches have a static
    shape (`static_shapes`, always on TPU), else one call per batch, traced once per
    batch width (fine-tuning's length buckets).
    """

    def __init__(self, strategy, settings: LoopSettings, task: Task, optimizer,
                 precision="float32", static_shapes=True):
        self.strategy, self.settings, self.task, self.optimizer = strategy, settings, task, optimizer
        self.static_shapes = static_shapes or is_tpu(strategy)
        with strategy.scope():
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step",
                                           aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            optimization.build_optimizer(optimizer, task.model.trainable_variables)
            self.sums = DeviceSums(dict(task.sum_shapes, **_TRAINER_SUMS))
        self._loss_scaled = precision == "mixed_float16"
        self.compile_functions()

    def compile_functions(self):
        """(Re)create the step's functions: after replacing `task`, the next call traces anew."""
        jit = self.settings.jit_compile and not is_tpu(self.strategy)
        if self.strategy.num_replicas_in_sync == 1 and not is_tpu(self.strategy):
            self._grad_fn = tf.function(self._clipped_loss_and_grads, jit_compile=jit)
            self._apply_fn = tf.function(self._apply_gradients, jit_compile=jit)
        else:
            replica_grads = (self._loss_and_grads
                             if is_tpu(self.strategy) or self.task.loss_syncs_replicas
                             else tf.function(self._loss_and_grads, jit_compile=jit))
            self._grad_fn = lambda features, seed: self._reduce_and_clip(*replica_grads(features, seed))
            self._apply_fn = self._apply_gradients
        self._loop_fn = tf.function(self._train_loop)
        self._step_fn = tf.function(self._distributed_step)

    # --- device side

    def _loss_and_grads(self, features, seed):
        """-> (loss, sums, this replica's gradients)."""
        variables = self.task.model.trainable_variables
        with tf.GradientTape() as tape:
            loss, sums = self.task.loss_fn(features, seed, True)
            scaled = self.optimizer.scale_loss(tf.cast(loss, tf.float32))
        return loss, sums, tape.gradient(scaled, variables)

    def _reduce_and_clip(self, loss, sums, grads):
        """-> (loss, sums, gradients summed over replicas and clipped, their true norm)."""
        grads, norm = optimization.reduce_and_clip(grads, self.settings.clip_norm,
                                                   optimization.loss_scale(self.optimizer))
        return loss, sums, grads, norm

    def _clipped_loss_and_grads(self, features, seed):
        return self._reduce_and_clip(*self._loss_and_grads(features, seed))

    def _apply_gradients(self, grads):
        self.optimizer.apply(grads, self.task.model.trainable_variables)

    def static_batch(self, features, global_batch):
        """Per-replica batches with a static batch size (multi-worker input leaves it open)."""
        per_replica = global_batch // self.strategy.num_replicas_in_sync
        return {k: tf.ensure_shape(v, [per_replica] + v.shape[1:]) for k, v in features.items()}

    def _train_step(self, features, step):
        features = self.static_batch(features, self.settings.train_batch_size)
        seed = self.task.step_seed(self.settings.seed, step)
        loss, sums, grads, norm = self._grad_fn(features, seed)
        self._apply_fn(grads)
        self.add_sums(loss, sums, norm)

    def add_sums(self, loss, sums, grad_norm):
        """Replica-sums of `loss` and `steps` are per-step global values; of the rest, counts."""
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        finite = tf.math.is_finite(tf.cast(loss, tf.float32))
        if not self._loss_scaled:  # float16 loss scaling skips steps with Inf gradients itself
            finite &= tf.math.is_finite(tf.cast(grad_norm, tf.float32))
        self.sums.add(dict(sums, loss=loss, steps=share, grad_norm=grad_norm * share,
                           nonfinite=1.0 - tf.cast(finite, tf.float32)))

    def _distributed_step(self, features):
        self.strategy.run(self._train_step, args=(features, self.global_step.read_value()))
        self.global_step.assign_add(1)

    def _train_loop(self, iterator, num_steps):
        for _ in tf.range(num_steps):
            self._distributed_step(next(iterator))

    def run_steps(self, iterator, num_steps):
        """Run `num_steps` training steps on batches from `iterator` (a distributed one)."""
        if self.static_shapes:
            self._loop_fn(iterator, tf.constant(num_steps, tf.int32))
        else:
            for _ in range(num_steps):
                self._step_fn(next(iterator))

    def trace_counts(self):
        """How often each step function was traced so far: more than 1 means retracing."""
        functions = {"loop": self._loop_fn, "loss_and_grads": self._grad_fn,
                     "apply_gradients": self._apply_fn}
        return {name: fn.experimental_get_tracing_count() for name, fn in functions.items()
                if hasattr(fn, "experimental_get_tracing_count")}


# ----------------------------------------------------------------------------- trainer

class Trainer:
    """Pretraining's loop around a `TrainStep`: `iterations_per_loop` steps per progress
    line and summaries, numbered checkpoints, stop requests, evaluation."""

    def __init__(self, strategy, settings: LoopSettings, task, optimizer, make_dataset, model_dir,
                 precision="float32", data_error=lambda error: error):
        """`make_dataset(step)` gives the distributed training input from global step
        `step` on (a pure function of it, so a checkpoint needs no iterator state);
        `data_error` turns a `DataLossError` into the exception to raise (naming the shard).
        """
        self.strategy, self.settings = strategy, settings
        self.model_dir, self.data_error = model_dir, data_error
        self.make_dataset, self.iterator = make_dataset, None
        self.chief = is_chief(strategy)
        self.step = TrainStep(strategy, settings, task, optimizer, precision)
        self.optimizer = optimizer
        self.global_step, self.sums = self.step.global_step, self.step.sums
        self.checkpoint = tf.train.Checkpoint(model=task.model, optimizer=optimizer,
                                              global_step=self.global_step)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._checkpoint_dir(), max_to_keep=settings.keep_checkpoint_max,
            step_counter=self.global_step, checkpoint_name=CHECKPOINT_NAME)
        self.stop_requested = False
        self._traced, self._seconds_per_step = False, None

    @property
    def task(self):
        return self.step.task

    def _eval_step(self, features):
        features = self.step.static_batch(features, self.settings.eval_batch_size)
        loss, sums = self.task.loss_fn(features, tf.constant([0, 0], tf.int64), False)
        self.step.add_sums(loss, sums, tf.constant(0.0))

    def _eval_loop(self, dataset):
        for features in dataset:
            self.strategy.run(self._eval_step, args=(features,))

    # --- host side

    def _checkpoint_dir(self):
        """Every worker must take part in saving; non-chief ones write their (identical)
        copy to `model_dir/.worker-<id>`, which nothing reads back."""
        if self.chief:
            return self.model_dir
        return f"{self.model_dir.rstrip('/')}/.worker-{self.strategy.cluster_resolver.task_id}"

    def restore(self):
        """Continue from the newest checkpoint in model_dir, if any; returns the step.
        (Checkpoints of older versions also hold an input iterator: it is not read.)"""
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            logging.info("restored %s at step %d", latest, int(self.global_step.numpy()))
        self.iterator = None
        return int(self.global_step.numpy())

    def request_stop(self, *_):
        """Signal handler (SIGTERM, TPU preemption): save after the running device call,
        which lasts about `stop_check_secs` at most, then stop."""
        logging.warning("stop requested (SIGTERM): saving a checkpoint of the current step")
        self.stop_requested = True

    def save(self):
        path = self.manager.save(checkpoint_number=self.global_step)
        logging.info("saved checkpoint %s", path)
        return path

    def train(self, num_train_steps=None, stop_at=None):
        """Train up to `num_train_steps` (or stop early at `stop_at`, or at a stop
        request); returns the step."""
        total = num_train_steps or self.settings.num_train_steps
        end = min(total, stop_at) if stop_at else total
        step = int(self.global_step.numpy())
        writer = self._summary_writer("train")
        started, start_step = time.time(), step
        print(f"training from step {step} to {end}", flush=True)
        while step < end and not self.stop_requested:
            next_save = (step // self.settings.save_checkpoints_steps + 1) * self.settings.save_checkpoints_steps
            n = min(self.settings.iterations_per_loop, end - step, next_save - step)
            self.sums.reset()
            loop_start, loop_first_step = time.time(), step
            step = self._run_checking_for_stop(n)
            metrics = self._loop_metrics(step, step - loop_first_step, time.time() - loop_start)
            eta = (time.time() - started) / max(step - start_step, 1) * (total - step)
            print(f"train step={step}/{total} {format_metrics(metrics)} "
                  f"eta={datetime.timedelta(seconds=round(eta))}", flush=True)
            write_summaries(writer, metrics, step)
            if self.task.after_loop:
                self.task.after_loop(step, metrics)
            if step % self.settings.save_checkpoints_steps == 0 or step == end or self.stop_requested:
                self.save()
        return step

    def _run_checking_for_stop(self, num_steps):
        """Run `num_steps` steps in device calls of about `stop_check_secs` each, checking
        for a stop request between them; returns the global step."""
        step = int(self.global_step.numpy())
        target = step + num_steps
        while step < target:
            chunk = self._steps_per_call(target - step)
            call_start = time.time()
            step = self.run_steps(chunk)
            if self._traced:  # the first call's time is mostly tracing and compiling
                self._seconds_per_step = (time.time() - call_start) / chunk
            self._traced = True
            if self.stop_requested:
                break
        return step

    def _steps_per_call(self, remaining):
        """As many steps as fit in `stop_check_secs` at the measured speed (one step
        while the speed is unknown: the first call traces and compiles)."""
        if self._seconds_per_step is None:
            return 1
        fit = int(self.settings.stop_check_secs / max(self._seconds_per_step, 1e-9))
        return max(1, min(remaining, fit))

    def run_steps(self, num_steps):
        """Run `num_steps` steps in one on-device loop; returns the global step. No
        metrics, summaries or checkpoints (`train` adds those): benchmarks time this."""
        try:
            if self.iterator is None:
                self.iterator = iter(self.make_dataset(int(self.global_step.numpy())))
            self.step.run_steps(self.iterator, num_steps)
        except tf.errors.DataLossError as e:
            raise self.data_error(e) from None
        return int(self.global_step.numpy())

    def trace_counts(self):
        return self.step.trace_counts()

    def _loop_metrics(self, step, n, seconds):
        sums = self.sums.read()
        if sums["nonfinite"] > 0:
            raise TrainingError(
                f"loss or gradients became NaN or Inf between steps {step - n} and {step}; "
                "stopping before saving. "
                f"The last good checkpoint is {self.manager.latest_checkpoint or '(none)'}. "
                "Lower learning_rate, check the data or use mixed_precision=float32.")
        metrics = self._summarize(sums)
        metrics["lr"] = float(self.optimizer.learning_rate.numpy())
        metrics["seq_per_s"] = n * self.settings.train_batch_size / seconds
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
        sums = self.sums.read()
        if not sums["steps"]:
            raise TrainingError("nothing to evaluate: the held-out data holds no complete batch "
                                "(lower eval_batch_size, or give more --eval_tfrecords data)")
        metrics = self._summarize(sums)
        step = int(self.global_step.numpy())
        print(f"eval step={step} {format_metrics(metrics)}", flush=True)
        write_summaries(self._summary_writer("eval"), metrics, step)
        return metrics

    def _summary_writer(self, name):
        if not self.chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(os.path.join(self.model_dir, name))


def format_metrics(metrics):
    """`name=value` pairs (4 significant digits) for the greppable progress line on stdout,
    which goes there without absl's log prefix; TensorBoard keeps the full values."""
    return " ".join(f"{name}={value:.4g}" for name, value in metrics.items())


def write_summaries(writer, metrics, step):
    with writer.as_default(step=step):
        for name, value in metrics.items():
            tf.summary.scalar(name, value)
    writer.flush()
