"""Speed of the ELECTRA pretraining step that `python -m electra_ko.pretrain` runs.

Builds the driver's own `Trainer` (model, AdamW, XLA-compiled loss-and-gradients,
on-device loop) from a config file plus overrides, feeds it synthetic token ids, and
reports seconds per step, sequences/s, model FLOPs per step (`benchmarks/flops.py`) and
the achieved GFLOP/s as a fraction of this CPU's float32 matmul peak, measured in the
same process (a chain of 2048x2048 `tf.matmul`s).

    python benchmarks/pretrain_step.py --config configs/small.json --batch_size 32 --xla true
    python benchmarks/pretrain_step.py --config configs/tiny.json --xla false --onednn false
    python benchmarks/pretrain_step.py --config configs/small.json --breakdown --profile_dir /tmp/prof
    # XLA's own default vector width instead of ours (a flag set in XLA_FLAGS is kept):
    XLA_FLAGS=--xla_cpu_prefer_vector_width=256 python benchmarks/pretrain_step.py --config configs/small.json

`--breakdown` also times parts of the step on their own (masking, generator, its vocab
projection, discriminator, loss+gradients, optimizer update with and without XLA);
`--profile_dir` records two steps with the TensorFlow profiler and prints the ops that
take the most time. `--set key=value` overrides any config key (e.g.
`--set mixed_precision=mixed_bfloat16`). The last output line is one JSON object.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from electra_ko import config as config_lib
from electra_ko import environment

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flops as flops_lib  # noqa: E402  (benchmarks/flops.py, next to this file)

SPECIAL_IDS = {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}  # DEVELOPERS.md layout
FIRST_WORD_ID = 5
MATMUL_SIZE = 2048
WAIT_EVENTS = ("BlockUntilReady",)  # profiler events that only wait for XLA to finish


def parse_bool(text):
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/small.json", help="pretraining config file")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=32000)
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps after the first (compiling) one")
    parser.add_argument("--steps_per_loop", type=int, default=1,
                        help="steps per on-device loop call (the driver's iterations_per_loop)")
    parser.add_argument("--xla", type=parse_bool, default=True,
                        help="jit_compile the loss and gradients (config key jit_compile)")
    parser.add_argument("--onednn", type=parse_bool, default=True,
                        help="TF_ENABLE_ONEDNN_OPTS, set before TensorFlow is imported")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override (repeatable)")
    parser.add_argument("--breakdown", action="store_true", help="also time parts of the step")
    parser.add_argument("--profile_dir", default=None,
                        help="record two steps with the TensorFlow profiler here")
    parser.add_argument("--skip_peak", action="store_true",
                        help="do not measure the matmul peak (faster; no peak fraction)")
    args = parser.parse_args(argv)
    for name in ("batch_size", "seq_len", "vocab_size", "steps", "steps_per_loop"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.steps % args.steps_per_loop:
        parser.error("--steps must be a multiple of --steps_per_loop")
    return args


def load_config(args):
    """The config the driver would resolve, with the benchmark's shape and XLA choice."""
    return config_lib.load_config(
        config_lib.PRETRAIN, args.config, args.set, None, vocab_size=args.vocab_size,
        train_batch_size=args.batch_size, max_seq_length=args.seq_len, jit_compile=args.xla)


def set_tensorflow_environment(onednn):
    """Must run before TensorFlow is imported: the CLIs' settings (`electra_ko.environment`,
    XLA_FLAGS included), with oneDNN as `--onednn` says."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow was imported before --onednn could take effect")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if onednn else "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    environment.configure_tensorflow()


# ------------------------------------------------------------------------ the step

def synthetic_batches(batch_size, seq_len, vocab_size, num_batches=4, seed=0):
    """int32 features shaped like the shards': [CLS] a [SEP] b [SEP], no padding."""
    rng = np.random.default_rng(seed)
    rows = batch_size * num_batches
    input_ids = rng.integers(FIRST_WORD_ID, vocab_size, size=(rows, seq_len), dtype=np.int32)
    half = seq_len // 2
    input_ids[:, 0] = SPECIAL_IDS["cls"]
    input_ids[:, half - 1] = SPECIAL_IDS["sep"]
    input_ids[:, -1] = SPECIAL_IDS["sep"]
    segment_ids = np.zeros_like(input_ids)
    segment_ids[:, half:] = 1
    return {"input_ids": input_ids, "input_mask": np.ones_like(input_ids),
            "segment_ids": segment_ids}


def synthetic_dataset(strategy, cfg):
    import tensorflow as tf
    arrays = synthetic_batches(cfg.train_batch_size, cfg.max_seq_length, cfg.vocab_size)
    dataset = (tf.data.Dataset.from_tensor_slices(arrays)
               .batch(cfg.train_batch_size, drop_remainder=True).cache().repeat().prefetch(2))
    return strategy.experimental_distribute_dataset(dataset)


def build_trainer(cfg, model_dir):
    """The driver's Trainer on the default strategy: (trainer, model, objective)."""
    import keras
    from electra_ko import pretrain, training
    keras.utils.set_random_seed(cfg.seed)
    cfg = cfg.replace(model_dir=model_dir)
    strategy, device = training.create_strategy("default", cfg=cfg)
    model, precision = pretrain.build_model(cfg, strategy, device)
    trainer, objective = pretrain.build_trainer(cfg, strategy, model, precision, SPECIAL_IDS,
                                                lambda step: synthetic_dataset(strategy, cfg))
    return trainer, model, objective


def run_loop(trainer, steps):
    """One on-device loop of `steps` steps, as `Trainer.train` runs it (returns once
    the loop has finished: it reads the global step)."""
    trainer.run_steps(steps)


def timed(fn):
    """(wall seconds, CPU seconds of this process) of `fn()`.

    CPU seconds (all threads) are much less sensitive than wall time to other processes
    competing for the cores, so they compare variants on a busy machine.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def time_steps(trainer, steps, warmup, steps_per_loop):
    """((wall, CPU) seconds of the first, compiling step; per-step (wall, CPU) seconds
    of each timed loop)."""
    first = timed(lambda: run_loop(trainer, 1))
    for _ in range(warmup):
        run_loop(trainer, 1)
    per_step = []
    for _ in range(steps // steps_per_loop):
        wall, cpu = timed(lambda: run_loop(trainer, steps_per_loop))
        per_step.append((wall / steps_per_loop, cpu / steps_per_loop))
    return first, per_step


# ------------------------------------------------------------------- matmul peak

def measure_matmul_peak(size=MATMUL_SIZE, chain=8, repeats=5):
    """Best float32 GFLOP/s of a chain of size x size matmuls (one graph, no XLA)."""
    import tensorflow as tf
    a = tf.random.normal([size, size], seed=1)
    w = tf.random.normal([size, size], seed=2) / size ** 0.5  # keeps the chain's scale

    @tf.function
    def matmul_chain(x):
        for _ in range(chain):
            x = tf.matmul(x, w)
        return tf.reduce_sum(x[:1, :1])

    matmul_chain(a).numpy()
    best = min(timed(lambda: matmul_chain(a).numpy())[0] for _ in range(repeats))
    return 2.0 * size ** 3 * chain / best / 1e9


# -------------------------------------------------------------------- breakdown

def part_functions(trainer, model, objective, cfg):
    """name -> zero-argument function running one part of the step, forward + backward.

    Each returns a scalar that depends on all its outputs, so nothing is pruned.
    """
    import tensorflow as tf
    from electra_ko import masking, optimization, randomness
    features = {k: tf.constant(v[:cfg.train_batch_size])
                for k, v in synthetic_batches(cfg.train_batch_size, cfg.max_seq_length,
                                              cfg.vocab_size).items()}
    ids, mask, segments = features["input_ids"], features["input_mask"], features["segment_ids"]
    seed = randomness.step_seed(cfg.seed, 1)
    masked = masking.mask_inputs(ids, mask, seed, objective, cfg.vocab_size)
    generator_variables = (model.generator.trainable_variables
                           + model.generator_predictions.trainable_variables)
    discriminator_variables = (model.discriminator.trainable_variables
                               + model.discriminator_predictions.trainable_variables)
    head_variables = model.generator_predictions.trainable_variables + [
        model.embeddings.word_embeddings]
    num_predictions = objective.max_predictions_per_seq
    gathered_hidden = tf.random.normal([cfg.train_batch_size, num_predictions,
                                        model.generator_config.hidden_size])

    def gradient_norm(loss_fn, variables):
        with tf.GradientTape() as tape:
            loss = loss_fn()
        return tf.linalg.global_norm(tape.gradient(loss, variables))

    def mlm_loss(logits):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=masked.masked_lm_ids, logits=logits))

    def masking_only():
        return tf.reduce_sum(masking.mask_inputs(ids, mask, seed, objective,
                                                 cfg.vocab_size).masked_lm_weights)

    def generator():
        return gradient_norm(lambda: mlm_loss(model.generator_logits(
            masked.input_ids, mask, segments, masked.masked_lm_positions, training=True,
            seed=seed)), generator_variables)

    def vocab_projection():
        return gradient_norm(lambda: mlm_loss(model.generator_predictions(
            gathered_hidden, model.embeddings.word_embeddings)), head_variables)

    def discriminator():
        labels = tf.cast(ids % 7 == 0, tf.float32)
        return gradient_norm(lambda: tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
            labels=labels, logits=model.discriminator_logits(ids, mask, segments, training=True,
                                                             seed=seed))),
            discriminator_variables)

    def loss_and_gradients():
        return gradient_norm(lambda: trainer.task.loss_fn(features, seed, True)[0],
                             model.trainable_variables)

    variables = model.trainable_variables
    constant_grads = [tf.fill(v.shape, 1e-3) for v in variables]
    optimizer = optimization.build_optimizer(optimization.create_optimizer(cfg), variables)

    def optimizer_update():
        grads, norm = optimization.reduce_and_clip(constant_grads, cfg.clip_norm)
        optimizer.apply(grads, variables)
        return norm

    return {"masking": (masking_only, cfg.jit_compile),
            "generator": (generator, cfg.jit_compile),
            "generator_vocab_projection": (vocab_projection, cfg.jit_compile),
            "discriminator": (discriminator, cfg.jit_compile),
            "loss_and_gradients": (loss_and_gradients, cfg.jit_compile),
            "optimizer_update": (optimizer_update, False),
            "optimizer_update_xla": (optimizer_update, True)}


def time_parts(parts, repeats):
    """name -> median wall and CPU milliseconds of one call (after a compiling call)."""
    import tensorflow as tf
    seconds = {}
    for name, (fn, jit) in parts.items():
        compiled = tf.function(fn, jit_compile=jit)
        try:
            compiled().numpy()
        except Exception as e:  # noqa: BLE001 - report the part that cannot compile, go on
            print(f"breakdown {name}: failed ({type(e).__name__}: {str(e).splitlines()[0]})")
            continue
        runs = [timed(lambda: compiled().numpy()) for _ in range(repeats)]
        seconds[name] = {"wall_ms": round(1000 * statistics.median(w for w, _ in runs), 1),
                         "cpu_ms": round(1000 * statistics.median(c for _, c in runs), 1),
                         "xla": jit}
        print(f"breakdown {name:28s} wall {seconds[name]['wall_ms']:9.1f} ms  "
              f"cpu {seconds[name]['cpu_ms']:9.1f} ms  (xla={jit})", flush=True)
    return seconds


# ---------------------------------------------------------------------- profile

def profile_steps(trainer, profile_dir, steps=2, top=20):
    """Record `steps` steps with the TensorFlow profiler; print and return the ops with
    the most self time on the compute threads (on a busy machine this includes time
    a thread waited for a core)."""
    import tensorflow as tf
    tf.profiler.experimental.start(profile_dir)
    run_loop(trainer, steps)
    tf.profiler.experimental.stop()
    space = read_trace(profile_dir)
    totals = self_times(space, xla_op_names(space))
    grand = sum(totals.values()) or 1
    ranked = sorted(totals.items(), key=lambda item: -item[1])[:top]
    for name, ps in ranked:
        print(f"profile {ps / 1e9 / steps:9.1f} ms/step {100 * ps / grand:5.1f}%  {name}")
    return [{"op": name, "ms_per_step": round(ps / 1e9 / steps, 2), "share": round(ps / grand, 4)}
            for name, ps in ranked]


def read_trace(profile_dir):
    """The XSpace proto of the newest trace under `profile_dir`."""
    import glob
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    files = sorted(glob.glob(os.path.join(profile_dir, "plugins", "profile", "*", "*.xplane.pb")),
                   key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f"the profiler wrote no *.xplane.pb under {profile_dir}")
    space = xplane_pb2.XSpace()
    with open(files[-1], "rb") as f:
        space.ParseFromString(f.read())
    return space


def xla_op_names(space):
    """XLA instruction name -> "TF op type TF op name" from the HLO modules in the trace.

    On a name clash the larger module wins: the training step's is by far the largest.
    """
    from tensorflow.compiler.xla.service import hlo_pb2
    modules = []
    for plane in space.planes:
        if plane.name != "/host:metadata":
            continue
        for metadata in plane.event_metadata.values():
            for stat in metadata.stats:
                proto = hlo_pb2.HloProto()
                proto.ParseFromString(stat.bytes_value)
                modules.append(proto.hlo_module)
    names = {}
    for module in sorted(modules, key=lambda m: sum(len(c.instructions) for c in m.computations)):
        for computation in module.computations:
            for instruction in computation.instructions:
                meta = instruction.metadata
                names[instruction.name] = f"{meta.op_type} {meta.op_name}".strip()
    return names


def self_times(space, xla_names):
    """Picoseconds of self time per op, over the host threads.

    Events nest on a thread (function call > executor > kernel); an event's self time is
    its duration minus its children's, so wrappers do not count their contents again.
    TensorFlow kernels ("scope/MatMul_3:MatMul") are grouped by op type; XLA thunks
    ("loop_fusion.12") are listed one by one with the TensorFlow op they came from.
    """
    totals = {}
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if line.name == "python":  # the caller waiting for the loop to finish
                continue
            for event_name, ps in line_self_times(plane, line):
                if event_name in WAIT_EVENTS:
                    continue
                label = op_label(event_name, xla_names)
                totals[label] = totals.get(label, 0) + ps
    return totals


def line_self_times(plane, line):
    events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
    stack, result = [], []  # stack of [end_ps, index into result]
    for event in events:
        while stack and stack[-1][0] <= event.offset_ps:
            stack.pop()
        if stack:
            result[stack[-1][1]][1] -= event.duration_ps
        result.append([plane.event_metadata[event.metadata_id].name, event.duration_ps])
        stack.append([event.offset_ps + event.duration_ps, len(result) - 1])
    return result


def op_label(event_name, xla_names):
    if ":" in event_name and "::" not in event_name:
        return "tf " + event_name.rsplit(":", 1)[1]
    if event_name in xla_names:
        return f"xla {event_name} <- {xla_names[event_name][-90:]}"
    return event_name


# --------------------------------------------------------------------------- main

def step_flops(model, cfg, objective):
    return flops_lib.electra_step_flops(
        flops_lib.EncoderShape.of(model.discriminator_config),
        flops_lib.EncoderShape.of(model.generator_config), cfg.train_batch_size,
        cfg.max_seq_length, objective.max_predictions_per_seq)


def config_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def timing_fields(first, per_step, batch_size, total_flops, peak):
    """The JSON fields derived from the timings: medians are robust to a busy machine."""
    walls, cpus = [w for w, _ in per_step], [c for _, c in per_step]
    step_s, cpu_s = statistics.median(walls), statistics.median(cpus)
    achieved = total_flops / step_s / 1e9
    return {
        "step_s": round(step_s, 4), "step_s_min": round(min(walls), 4),
        "step_s_mean": round(statistics.mean(walls), 4),
        "cpu_s_per_step": round(cpu_s, 4), "first_step_s": round(first[0], 2),
        "seq_per_s": round(batch_size / step_s, 2),
        "model_flops_per_step": total_flops,
        "achieved_gflops": round(achieved, 2),
        "gflops_per_cpu_s": round(total_flops / cpu_s / 1e9, 2),
        "matmul_peak_gflops": None if peak is None else round(peak, 2),
        "peak_fraction": None if peak is None else round(achieved / peak, 3),
    }


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = load_config(args)
    except config_lib.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not cfg.electra_objective:
        print("error: this benchmark measures the ELECTRA objective (electra_objective=true)",
              file=sys.stderr)
        return 2
    set_tensorflow_environment(args.onednn)
    import keras

    with tempfile.TemporaryDirectory(prefix="pretrain_step_bench_") as model_dir:
        trainer, model, objective = build_trainer(cfg, model_dir)
        flops = step_flops(model, cfg, objective)
        precision = keras.mixed_precision.global_policy().name
        print(f"config={args.config} model_size={cfg.model_size} batch={cfg.train_batch_size} "
              f"seq={cfg.max_seq_length} xla={cfg.jit_compile} onednn={args.onednn} "
              f"XLA_FLAGS='{os.environ.get('XLA_FLAGS', '')}' "
              f"precision={precision} model_gflops_per_step={flops['total'] / 1e9:.1f}",
              flush=True)
        first, per_step = time_steps(trainer, args.steps, args.warmup, args.steps_per_loop)
        print(f"first (compiling) step: {first[0]:.1f} s", flush=True)
        for i, (wall, cpu) in enumerate(per_step):
            print(f"loop {i}: {wall:.3f} s/step wall, {cpu:.3f} CPU-s/step", flush=True)
        profile = profile_steps(trainer, args.profile_dir) if args.profile_dir else None
        breakdown = (time_parts(part_functions(trainer, model, objective, cfg), args.steps)
                     if args.breakdown else None)
        traces = trainer.trace_counts()
    peak = None if args.skip_peak else measure_matmul_peak()
    result = {
        "config": config_name(args.config), "model_size": cfg.model_size,
        "batch_size": cfg.train_batch_size, "seq_len": cfg.max_seq_length,
        "vocab_size": cfg.vocab_size, "xla": cfg.jit_compile, "onednn": args.onednn,
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "precision": precision,
        **timing_fields(first, per_step, cfg.train_batch_size, flops["total"], peak),
        "flops_by_part": {k: v for k, v in flops.items() if k != "total"},
        "steps": args.steps, "steps_per_loop": args.steps_per_loop, "traces": traces,
        "load_avg_1m": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
    }
    if breakdown is not None:
        result["breakdown"] = breakdown
    if profile is not None:
        result["profile_top_ops"] = profile
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
