"""ELECTRA pretraining driver: `python -m electra_ko.pretrain --config configs/base.json`.

One code path for a Cloud TPU, one or several GPUs, several machines and a laptop CPU:
the strategy is picked from the flags and the environment, the input is distributed
per host, and one `tf.function` runs `iterations_per_loop` steps on the device before
the host prints a line like

    train step=400/1000 loss=8.142 mlm_loss=6.213 mlm_acc=0.1234 sampled_acc=0.1012 disc_loss=0.0412
      disc_acc=0.9301 disc_precision=0.6 disc_recall=0.4 disc_auc=0.8123 disc_auc_all=0.9012
      lr=0.0005 seq_per_s=31.5 eta=0:05:10

(one line on stdout, 4 significant digits, no log prefix: `grep '^train step='`) and
writes the full values as TensorBoard summaries.

Discriminator health: disc_precision, disc_recall and disc_auc count the maskable tokens
only (real tokens other than [CLS], [SEP], [PAD]), which the generator can replace;
disc_auc_all is the AUC over all real tokens, inflated by the special tokens the
discriminator learns at once never to flag. A discriminator whose precision and recall
are still 0 `disc_health_check_steps` steps after warm-up gets one warning with what to try.

Layout of `model_dir` (local or gs://):

    config.json              resolved config of the run (also printed at start)
    ckpt-<step>.*, checkpoint  training state: model, optimizer slots, global step and the
                             input iterator position (exact resume)
    train/, eval/            TensorBoard event files
    eval_results.txt         `--do_eval` metrics
    discriminator/, generator/  the final models as Hugging Face folders
                             (`model.safetensors`, `config.json`, vocabulary files);
                             fine-tuning loads `discriminator/` alone

Resume: re-running the same command continues from the newest `ckpt-<step>`; raising
`num_train_steps` continues a finished run. `--init_checkpoint` starts a new run from the
weights of another (`electra_ko.warm_start`), never a resumed one. SIGTERM (TPU preemption)
saves a checkpoint of the current step within about `stop_check_secs` and exits with status
75 (`training.EXIT_PREEMPTED`); re-running the same command resumes exactly. A NaN/Inf loss
stops the run; the newest checkpoint is the last good one.
"""
import json
import pickle
import posixpath
import os
import signal
import sys

import keras
import tensorflow as tf
from absl import app, flags, logging

from electra_ko import config as config_lib
from electra_ko import data as data_lib
from electra_ko import masking, modeling
from electra_ko import optimization, randomness, storage, warm_start
from electra_ko import tpu as tpu_lib
from electra_ko import model_dir as model_dir_lib
from electra_ko.checkpoints import CheckpointError
from electra_ko.training import (EXIT_PREEMPTED, LoopSettings, Trainer, TrainingError, is_chief,
                                 create_strategy)
from electra_ko import vocab as vocab_lib


def export_towers(model, vocab_path, output_dir, max_seq_length):
    """`output_dir/discriminator` and `output_dir/generator` as Hugging Face directories
    (weights + config + vocab), so fine-tuning can load the discriminator alone."""
    from electra_ko import checkpoints, export  # local: needs safetensors, only at the end
    written = []
    for tower in checkpoints.pretrainer_towers(model):
        written.append(_write_to(output_dir, tower.kind, lambda local: export.write_huggingface(
            tower, vocab_path, local, max_seq_length)))
    return written


def _write_to(output_dir, name, write):
    """Run `write(local_dir)` for output_dir/name (staged locally when it is on gs://)."""
    target = storage.join(output_dir, name)
    with storage.staged_output(target) as local:
        write(local)
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
    flags.DEFINE_string("init_checkpoint", None, "start from these weights: our model_dir, a "
                        "Hugging Face ELECTRA pair/discriminator/masked LM or a TF1 checkpoint")
    flags.DEFINE_string("init_generator", None, "Hugging Face generator folder for a "
                        "discriminator-only --init_checkpoint")
    flags.DEFINE_string("vocab", None, "vocab.txt or a vocab directory (config key vocab_file)")
    flags.DEFINE_alias("vocab_file", "vocab")  # the config key's name, as google-research
    flags.DEFINE_string("corpus", None, "raw corpus: build vocab and shards first if missing")
    flags.DEFINE_string("tpu", None, "Cloud TPU name, or 'local' on a TPU VM")
    flags.DEFINE_enum("strategy", "auto", ["auto", "tpu", "mirrored", "multi_worker", "default"],
                      "distribution strategy")
    flags.DEFINE_multi_string("set", [], "config override key=value (repeatable)")
    flags.DEFINE_string("hparams", None, "JSON text or file of config overrides")
    flags.DEFINE_bool("dry_run", False, "validate config and data, print sizes, do not train")
    flags.DEFINE_bool("list_keys", False, "print every config key with its default and doc")
    flags.DEFINE_bool("deterministic", False, "fixed seeds and deterministic ops (CPU resume tests)")
    flags.DEFINE_bool("do_eval", None, "evaluate MLM and discriminator metrics at the end")
    flags.DEFINE_integer("stop_at_step", None, "stop (with a checkpoint) at this step; "
                         "re-running continues", lower_bound=1)


def resolve_config():
    """Config from the file, --hparams, --set and the path flags (validated). A dry run
    needs no vocab or model_dir when the config gives `vocab_size`."""
    paths = dict(data_dir=FLAGS.data_dir, pretrain_tfrecords=FLAGS.pretrain_tfrecords,
                 model_dir=FLAGS.model_dir, vocab_file=FLAGS.vocab, corpus=FLAGS.corpus,
                 do_eval=FLAGS.do_eval, init_checkpoint=FLAGS.init_checkpoint,
                 init_generator=FLAGS.init_generator)
    cfg = config_lib.load_config(config_lib.PRETRAIN, FLAGS.config, FLAGS.set, FLAGS.hparams,
                                 **paths)
    for key, flag in (("vocab_file", "vocab"), ("model_dir", "model_dir")):
        if not getattr(cfg, key) and not (FLAGS.dry_run and cfg.vocab_size):
            raise config_lib.ConfigError(f"config key {key!r} is not set: give --{flag} or "
                                         "--data_dir")
    return cfg


def prepare_from_corpus(cfg):
    """Run the vocab and data stages for `cfg.corpus` where their outputs are missing.

    Returns (cfg, the vocab's tokenizer); cfg has `vocab_size` cleared when the vocab stage
    owns the vocab: the key was
    its target, and a small corpus yields fewer tokens, so the model takes the size of
    the vocab actually built (a vocab without build metadata must match the key exactly).
    An existing vocab is reused only if it still matches its recorded hash and was built
    with this config's vocab settings; the data stage skips complete shards after
    checking its manifest (vocab sha256, sequence length, its seed) and refuses others.
    """
    from electra_ko import build_data  # local: only the one-command path needs it
    if not cfg.pretrain_tfrecords:
        raise config_lib.ConfigError("config key 'corpus' needs 'pretrain_tfrecords' or "
                                     "'data_dir' for the shards it builds")
    existed = storage.exists(cfg.vocab_file)
    tokenizer, sized_by_vocab = vocab_lib.ensure_vocab(cfg.vocab_file, [cfg.corpus], vocab_settings(cfg),
                                            check_size=cfg.vocab_size is not None)
    if existed:
        print(f"vocab stage: {cfg.vocab_file} exists, skipped", file=sys.stderr)
    # No seed: build_data keeps its own, so a new training `seed` leaves the shards valid.
    settings = build_data.BuildSettings(
        corpus=(cfg.corpus,), vocab=cfg.vocab_file, output_dir=cfg.pretrain_tfrecords,
        num_shards=cfg.num_shards, max_seq_length=cfg.max_seq_length)
    build_data.build(settings, "python -m electra_ko.pretrain (corpus stage)", tokenizer)
    return (cfg.replace(vocab_size=None) if sized_by_vocab else cfg), tokenizer


def vocab_settings(cfg):
    """The `vocab.VocabSettings` the config's vocab keys ask for."""
    return vocab_lib.VocabSettings(
        vocab_size=cfg.vocab_size or vocab_lib.VocabSettings.vocab_size,
        num_unused=cfg.num_unused, do_lower_case=cfg.do_lower_case,
        limit_alphabet=cfg.limit_alphabet, min_frequency=cfg.min_frequency)


def with_vocab(cfg, tokenizer=None):
    """(cfg with vocab_size from the vocab, tokenizer); a set vocab_size must agree.
    `tokenizer`: the vocab's, already loaded."""
    tokenizer = tokenizer or vocab_lib.load_tokenizer(cfg.vocab_file)
    if cfg.vocab_size not in (None, tokenizer.vocab_size):
        raise config_lib.ConfigError(f"config key 'vocab_size' is {cfg.vocab_size} but "
                                     f"{cfg.vocab_file} holds {tokenizer.vocab_size} tokens")
    return cfg.replace(vocab_size=tokenizer.vocab_size), tokenizer


def checked_shards(cfg, tokenizer, directory):
    """(shard files, compression, manifest) of `directory` after checking its manifest."""
    manifest = data_lib.read_manifest(directory)
    data_lib.check_manifest(manifest, directory, tokenizer.vocab_sha256, tokenizer.vocab_size,
                            cfg.max_seq_length)
    return data_lib.shard_files(directory), data_lib.compression_of(manifest), manifest


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


def tpu_memory_check(cfg, num_params):
    """Per-device memory estimate for `cfg.tpu_type` (None when unset), printed with a
    warning when the run cannot fit."""
    if not cfg.tpu_type:
        return None
    try:
        estimate = tpu_lib.estimate_memory(cfg, num_params, tpu_lib.Slice.parse(cfg.tpu_type))
    except tpu_lib.SliceError as e:
        raise config_lib.ConfigError(f"config key 'tpu_type': {e}") from None
    print("tpu memory: " + " ".join(f"{k}={v}" for k, v in estimate.items()))
    warning = tpu_lib.memory_warning(estimate)
    if warning:
        logging.warning("%s", warning)
        print(warning, file=sys.stderr)
    return estimate


def build_model(cfg, strategy, device):
    """(the `ElectraPretrainer` cfg describes, made under `strategy.scope()`, its precision
    policy), with the global precision policy and dropout bits set for `device`."""
    precision = optimization.precision_policy(cfg.mixed_precision, device)
    keras.mixed_precision.set_global_policy(precision)
    randomness.use_dropout_bits_for(device)
    with strategy.scope():
        return modeling.ElectraPretrainer.from_project_config(cfg), precision


def build_trainer(cfg, strategy, model, precision, special_ids, make_dataset, continuation=None,
                  data_error=None):
    """(the `Trainer` of cfg's objective for `model` on `make_dataset(first_step)`'s batches,
    checkpointing in cfg.model_dir; the `masking.ObjectiveConfig`). `continuation`: the
    whole-word-masking table, if any."""
    objective = masking.ObjectiveConfig.from_config(cfg, special_ids, continuation)
    with strategy.scope():
        optimizer = optimization.create_optimizer(cfg, precision)
    trainer = Trainer(strategy, LoopSettings.from_config(cfg),
                      masking.electra_task(cfg, model, objective), optimizer, make_dataset,
                      cfg.model_dir, precision, data_error=data_error)
    return trainer, objective


def run(cfg, strategy_kind="auto", tpu=None, dry_run=False, deterministic=False,
        eval_dir=None, stop_at=None):
    """The whole driver after flag parsing; returns the final (or dry-run) summary dict."""
    check_outputs(cfg, dry_run)
    keras.utils.set_random_seed(cfg.seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    tokenizer = None
    if cfg.corpus and not dry_run:
        cfg, tokenizer = prepare_from_corpus(cfg)
    if not (dry_run and cfg.vocab_size and not (cfg.vocab_file and storage.exists(cfg.vocab_file))):
        cfg, tokenizer = with_vocab(cfg, tokenizer)  # else: sizes from the config alone
    init = read_init_checkpoint(cfg, tokenizer) if tokenizer else None
    if init:
        cfg = warm_start.sized_config(cfg, init)
    shards = checked_shards(cfg, tokenizer, cfg.pretrain_tfrecords) if (
        tokenizer and cfg.pretrain_tfrecords
        and (not dry_run or storage.exists(cfg.pretrain_tfrecords))) else None
    strategy, device = create_strategy(strategy_kind, tpu, cfg)
    model, precision = build_model(cfg, strategy, device)
    counts = parameter_counts(model)
    print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    print("parameters: " + " ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(f"strategy={type(strategy).__name__} replicas={strategy.num_replicas_in_sync} "
          f"device={device} precision={precision}")
    memory = tpu_memory_check(cfg, counts["total"])
    if dry_run:
        records = data_lib.verify_shards(*shards) if shards else 0
        return {"parameters": counts, "shards": len(shards[0]) if shards else 0,
                "records": records, **({"tpu_memory": memory} if memory else {})}
    if shards is None:
        raise data_lib.DataError("no pretraining data: give --pretrain_tfrecords or --data_dir")
    files, compression, manifest = shards
    with model_dir_lib.model_dir_lock(cfg.model_dir, strategy) as lock:
        if lock:  # the chief, unless on a multi-host TPU: alone in the model_dir
            model_dir_lib.remove_temporaries(cfg.model_dir)
        model_dir_lib.check_resumable(cfg, tokenizer, manifest)
        if is_chief(strategy):  # another worker would race the chief's clean-up
            model_dir_lib.write_config(cfg, cfg.model_dir, tokenizer, manifest)
        train_files, eval_files = split_eval_shards(files, eval_dir, cfg.do_eval)
        if cfg.do_eval:
            evaluation = held_out_data(cfg, tokenizer, eval_dir, eval_files, compression, manifest)
        shard_sizes = data_lib.shard_example_counts(manifest, train_files, compression)

        def make_dataset(step):
            return data_lib.distributed_dataset(strategy, train_files, cfg.train_batch_size,
                                                cfg.max_seq_length, compression, True, cfg.seed,
                                                counts=shard_sizes, first_step=step)
        trainer, _ = build_trainer(
            cfg, strategy, model, precision, tokenizer.special_ids, make_dataset,
            _continuation_table(cfg, tokenizer),
            data_error=lambda e: data_lib.corrupt_shard_error(files, compression, e))
        if init:
            start_from(init, trainer, model)
        step = trainer.restore()
        if not cfg.do_train:  # the original's evaluate-only run
            return {"step": step, "parameters": counts,
                    "eval": _evaluate(trainer, cfg, strategy, *evaluation)}
        signal.signal(signal.SIGTERM, trainer.request_stop)
        if trainer.chief:
            model_dir_lib.clear_stopped_early(cfg.model_dir)
        try:
            step = trainer.train(stop_at=stop_at)
        except TrainingError as err:
            if trainer.chief:
                model_dir_lib.mark_stopped_early(cfg.model_dir, trainer.global_step.numpy(),
                                                 str(err))
            raise
        summary = {"step": step, "parameters": counts}
        if trainer.stop_requested:
            if trainer.chief:
                model_dir_lib.mark_stopped_early(cfg.model_dir, step, "SIGTERM (preempted)")
            print(f"preempted at step {step}: checkpoint saved in {cfg.model_dir}; re-run the same "
                  f"command to resume (exit status {EXIT_PREEMPTED})", file=sys.stderr, flush=True)
            return dict(summary, preempted=True)
        if step < cfg.num_train_steps:
            return summary
        if cfg.do_eval:
            summary["eval"] = _evaluate(trainer, cfg, strategy, *evaluation)
        if trainer.chief:
            summary["exported"] = export_towers(model, cfg.vocab_file, cfg.model_dir,
                                                cfg.max_seq_length)
        return summary


def check_outputs(cfg, dry_run):
    """Refuse an unwritable model_dir, and shards dir when the run builds the shards, before
    any long work (the vocab stage checks its own folder first thing)."""
    builds_shards = cfg.corpus and not dry_run
    for path in (cfg.model_dir, cfg.pretrain_tfrecords if builds_shards else None):
        if path:
            storage.check_writable(path)


def read_init_checkpoint(cfg, tokenizer):
    """The `init_checkpoint` to start from (None without one), its vocab checked."""
    if cfg.init_generator and not cfg.init_checkpoint:
        raise config_lib.ConfigError("config key 'init_generator' needs 'init_checkpoint' "
                                     "(the discriminator)")
    if not cfg.init_checkpoint:
        return None
    init = warm_start.read(cfg.init_checkpoint, cfg.init_generator, cfg)
    warm_start.check_vocab(init, tokenizer, cfg.vocab_file)
    return init


def start_from(init, trainer, model):
    """Load the init checkpoint, unless model_dir has checkpoints: resuming wins."""
    latest = tf.train.latest_checkpoint(trainer.model_dir)
    if latest:
        logging.warning("--init_checkpoint %s ignored: %s holds %s, resuming from it",
                        init.path, trainer.model_dir, os.path.basename(latest))
        return
    with trainer.strategy.scope():
        for line in warm_start.load(model, init):
            print(f"init_checkpoint: {line}")


def _continuation_table(cfg, tokenizer):
    if not cfg.whole_word_masking:
        return None
    return masking.continuation_table(tokenizer.tokens, tokenizer.kind)


def held_out_data(cfg, tokenizer, eval_dir, eval_files, compression, manifest):
    """(shards, compression) `--do_eval` reads: `eval_dir`'s, else the held-out training
    shard; refused before training when they hold no complete batch."""
    if eval_dir:
        eval_files, compression, manifest = checked_shards(cfg, tokenizer, eval_dir)
    examples = sum(data_lib.shard_example_counts(manifest, eval_files, compression))
    if examples < cfg.eval_batch_size:
        raise data_lib.DataError(
            f"nothing to evaluate: the held-out data ({', '.join(eval_files)}) holds {examples} "
            f"examples, fewer than one batch (eval_batch_size {cfg.eval_batch_size})")
    return eval_files, compression


def _evaluate(trainer, cfg, strategy, eval_files, compression):
    dataset = data_lib.distributed_dataset(strategy, eval_files, cfg.eval_batch_size,
                                           cfg.max_seq_length, compression, training=False,
                                           num_batches=cfg.num_eval_steps)
    metrics = trainer.evaluate(dataset)
    if trainer.chief:
        write_eval_results(metrics, cfg)
    return metrics


def write_eval_results(metrics, cfg):
    """`key = value` lines to `results_txt` (default model_dir/eval_results.txt) and, when
    `results_pkl` is set, the dict pickled there, as google-research/electra writes them."""
    text = "".join(f"{k} = {v}\n" for k, v in metrics.items())
    results_txt = cfg.results_txt or storage.join(cfg.model_dir, "eval_results.txt")
    storage.makedirs(posixpath.dirname(results_txt) or ".")
    storage.write_text(results_txt, text)
    if cfg.results_pkl:
        storage.makedirs(posixpath.dirname(cfg.results_pkl) or ".")
        with storage.atomic_writer(cfg.results_pkl, binary=True) as f:
            f.write(pickle.dumps({k: float(v) for k, v in metrics.items()}))


def _build_error():
    from electra_ko import build_data
    return build_data.BuildError


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.list_keys:
        print(config_lib.describe_keys(config_lib.PRETRAIN))
        return
    try:
        cfg = resolve_config()
        summary = run(cfg, FLAGS.strategy, FLAGS.tpu, FLAGS.dry_run, FLAGS.deterministic,
                      FLAGS.eval_tfrecords, FLAGS.stop_at_step)
    except (config_lib.ConfigError, data_lib.DataError, vocab_lib.VocabError,
            TrainingError, CheckpointError, storage.OutputError, _build_error()) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, default=str))
    return EXIT_PREEMPTED if summary.get("preempted") else 0


if __name__ == "__main__":
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
