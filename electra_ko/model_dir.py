"""What a pretraining model_dir holds besides checkpoints, and the rules for re-using one.

    config.json          the resolved config of the run
    run_identity.json    the vocab (sha256, size) and shards (path, manifest summary) it trains on
    RUNNING.lock         while a run trains into it; the run that takes it first removes the
                         temporaries of runs killed while writing (see `TEMPORARIES`)
    ckpt-<step>.*        checkpoints (`training.Trainer`), from which the towers can be rebuilt
                         at any saved step (`find_checkpoint`, `restore_pretrainer`)

A run that resumes the folder's checkpoints may not change its architecture or vocab
(refused, naming the keys or both hashes, before anything is written); other shards of the
same vocab only log, since the input restarts at the global step. A second run into a
folder in use stops at once.
"""
import contextlib
import os
import re
import socket
import time

import tensorflow as tf
from absl import logging

from electra_ko import architecture
from electra_ko import config as config_lib
from electra_ko import modeling, storage, training
from electra_ko.checkpoints import DISCRIMINATOR, GENERATOR, CheckpointError


CONFIG_FILE = "config.json"
# What a model_dir's checkpoints are bound to: a run that resumes them must not change it
# (the architecture, but its dropout and how a random model starts).
RESUME_FIXED_KEYS = tuple(
    k for k in architecture.ARCHITECTURE_KEYS
    if k not in architecture.DROPOUT_KEYS + architecture.INIT_KEYS) + (
    "generator_hidden_size", "generator_layers", "electra_objective", "embedding_sharing",
    "untied_generator_embeddings")
RUN_IDENTITY_FILE = "run_identity.json"  # vocab and shards the checkpoints were trained on


def check_resumable(cfg, tokenizer, manifest):
    """Before anything is written into a model_dir that holds checkpoints: refuse another
    architecture or vocab (naming the keys or both hashes); other shards only log, since
    the input restarts at the global step from whatever shards are given."""
    if not tf.train.latest_checkpoint(cfg.model_dir):
        return
    config_path = storage.join(cfg.model_dir, CONFIG_FILE)
    if storage.exists(config_path):
        recorded = storage.read_json(config_path, config_lib.ConfigError)
        changed = [f"{key}: {recorded.get(key)!r} there, {getattr(cfg, key)!r} now"
                   for key in RESUME_FIXED_KEYS if key in recorded and recorded[key] != getattr(cfg, key)]
        if changed:
            raise config_lib.ConfigError(
                f"{cfg.model_dir} holds checkpoints of another architecture ({'; '.join(changed)}): "
                "set the keys back to resume, or give another --model_dir to start a new run")
    identity_path = storage.join(cfg.model_dir, RUN_IDENTITY_FILE)
    if not storage.exists(identity_path):
        return
    identity = storage.read_json(identity_path, config_lib.ConfigError)
    if identity.get("vocab_sha256") not in (None, tokenizer.vocab_sha256):
        raise config_lib.ConfigError(
            f"{cfg.model_dir} was trained with another vocabulary (vocab sha256 "
            f"{identity['vocab_sha256'][:12]}... there, {tokenizer.vocab_sha256[:12]}... in "
            f"{cfg.vocab_file}): its embeddings would be read under new token ids. Use that "
            "vocabulary to resume, or give another --model_dir (or delete this one) to start over")
    if identity.get("shards") != shards_identity(cfg, manifest):
        logging.warning("the pretraining shards changed since %s was last trained (%s then, %s "
                        "now): continuing from its newest checkpoint with the new shards",
                        cfg.model_dir, identity.get("shards"), shards_identity(cfg, manifest))


def shards_identity(cfg, manifest):
    """Where the shards are and what the manifest says about them (examples, seed, ...)."""
    return {"path": cfg.pretrain_tfrecords, "examples": manifest.get("examples"),
            "seed": manifest.get("seed"), "num_shards": manifest.get("num_shards")}


LOCK_FILE = "RUNNING.lock"  # in a model_dir while a run trains into it


class ModelDirLock:
    """`model_dir/RUNNING.lock` for the life of a run, so a second run into the same folder
    stops at once instead of overwriting the first one's checkpoints. A lock left by a
    killed run on this machine (its process is gone) is broken with a log line; any other
    is broken by deleting the file, as the error says."""

    def __init__(self, model_dir):
        self.path = storage.join(model_dir, LOCK_FILE)
        self.held = False

    def __enter__(self):
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
        for _ in range(2):
            if storage.create_exclusive(self.path, storage.json_text(
                    owner, indent=None, ensure_ascii=True, newline=False)):
                self.held = True
                return self
            if not self._break_if_stale():
                break
        holder = self._holder()
        raise config_lib.ConfigError(
            f"another run is training into this model_dir (pid {holder.get('pid')} on "
            f"{holder.get('host')}, see {self.path}): give another --model_dir, or if that run "
            f"is dead, delete {self.path}")

    def __exit__(self, *_):
        if self.held:
            storage.remove(self.path)

    def _holder(self):
        try:
            return storage.read_json(self.path)
        except (OSError, ValueError):
            return {}

    def _break_if_stale(self):
        holder = self._holder()
        if holder.get("host") != socket.gethostname() or _process_alive(holder.get("pid")):
            return False
        logging.warning("breaking the stale lock %s of a run that is gone (pid %s)", self.path,
                        holder.get("pid"))
        storage.remove(self.path)
        return True


# What a run killed while writing leaves: TensorFlow's checkpoint parts before their merge
# and its temporary `checkpoint` state file (local disks), our writers' temporary files.
TEMPORARIES = (training.CHECKPOINT_NAME + "-*_temp", "checkpoint.tmp*") + tuple(
    storage.writer_temporaries(name) for name in (CONFIG_FILE, RUN_IDENTITY_FILE))
EXPORT_DIRS = (DISCRIMINATOR, GENERATOR)  # written through storage.staged_output


def remove_temporaries(model_dir):
    """Remove what killed runs left in the model_dir and its export folders: called holding
    the lock, so no live run can be writing them."""
    storage.remove_stale_temporaries(model_dir, TEMPORARIES, owned=True)
    for name in EXPORT_DIRS:
        storage.remove_stale_temporaries(storage.join(model_dir, name),
                                         [storage.STAGING_TEMPORARIES], owned=True)


def model_dir_lock(model_dir, strategy):
    """The lock a run holds on its model_dir: taken by the chief alone (other workers write
    under model_dir/.worker-N), and not on a multi-host TPU, whose hosts all run as chief."""
    multi_host_tpu = training.is_tpu(strategy) and strategy.extended.num_hosts > 1
    if not training.is_chief(strategy) or multi_host_tpu:
        return contextlib.nullcontext()
    storage.makedirs(model_dir)
    return ModelDirLock(model_dir)


def _process_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def is_run_dir(path):
    """True for a folder holding a pretraining run's config.json (a Hugging Face model's
    config.json has a model_type)."""
    config_path = storage.join(path, CONFIG_FILE)
    return storage.exists(config_path) and "model_type" not in config_lib.read_json_file(
        config_path)


def run_config(model_dir):
    """The resolved config a pretraining run recorded in its model_dir."""
    return config_lib.load_config(config_lib.PRETRAIN, storage.join(model_dir, CONFIG_FILE))


_CHECKPOINT_PREFIX = re.compile(rf"{training.CHECKPOINT_NAME}-(\d+)")


def find_checkpoint(path, step=None):
    """The prefix of a pretraining run's checkpoint when `path` is its model_dir (the
    checkpoint of `step`; by default the newest, None if there is none) or a `ckpt-<step>`
    in it; None for any other path."""
    directory, name = os.path.split(path.rstrip("/"))
    named = _CHECKPOINT_PREFIX.fullmatch(name)
    if named and is_run_dir(directory):
        if step not in (None, int(named.group(1))):
            raise CheckpointError(f"{path} is the checkpoint of step {named.group(1)}, but step "
                                  f"{step} was asked for: give one of them")
        return checkpoint_of_step(directory, int(named.group(1)))
    if not is_run_dir(path):
        return None
    return tf.train.latest_checkpoint(path) if step is None else checkpoint_of_step(path, step)


def checkpoint_of_step(model_dir, step):
    """The prefix of model_dir's checkpoint of `step`; an error listing the steps saved when
    there is none."""
    steps = checkpoint_steps(model_dir)
    if step not in steps:
        raise CheckpointError(f"{model_dir} has no checkpoint of step {step} "
                              f"({training.CHECKPOINT_NAME}-{step}.index); steps saved: "
                              f"{', '.join(map(str, steps)) or 'none'}")
    return storage.join(model_dir, f"{training.CHECKPOINT_NAME}-{step}")


def checkpoint_steps(model_dir):
    """The global steps of the checkpoints in model_dir, ascending."""
    pattern = storage.join(model_dir, f"{training.CHECKPOINT_NAME}-*.index")
    names = (os.path.basename(path)[:-len(".index")] for path in storage.glob(pattern))
    return sorted(int(match.group(1)) for match in map(_CHECKPOINT_PREFIX.fullmatch, names)
                  if match)


def restore_pretrainer(prefix):
    """(model, config) of a pretraining run's checkpoint: the `ElectraPretrainer` its
    config.json describes, holding the checkpoint's weights (its optimizer stays behind)."""
    cfg = run_config(os.path.dirname(prefix))
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    status = tf.train.Checkpoint(model=model).restore(prefix)
    status.assert_existing_objects_matched().expect_partial()
    return model, cfg


STOPPED_EARLY_FILE = "STOPPED_EARLY.json"  # why and at which step the last run stopped early


def mark_stopped_early(model_dir, step, reason):
    """Say in the model_dir that its last run stopped before num_train_steps (a SIGTERM, a
    non-finite loss), so a folder of checkpoints is never taken for a finished run."""
    storage.write_json(storage.join(model_dir, STOPPED_EARLY_FILE),
                       {"step": int(step), "reason": reason}, indent=1, ensure_ascii=True)


def clear_stopped_early(model_dir):
    """A run that trains on removes the marker of the one before."""
    path = storage.join(model_dir, STOPPED_EARLY_FILE)
    if storage.exists(path):
        storage.remove(path)


def write_config(cfg, model_dir, tokenizer=None, manifest=None):
    """The resolved config (`config.json`) and, with a tokenizer, the vocab and shards the
    run trains on (`run_identity.json`)."""
    storage.makedirs(model_dir)
    text = storage.write_json(storage.join(model_dir, CONFIG_FILE), cfg.to_dict(),
                              sort_keys=True, ensure_ascii=True)
    if tokenizer is not None:
        identity = {"vocab_sha256": tokenizer.vocab_sha256, "vocab_size": tokenizer.vocab_size,
                    "shards": shards_identity(cfg, manifest or {})}
        storage.write_json(storage.join(model_dir, RUN_IDENTITY_FILE), identity,
                           sort_keys=True, ensure_ascii=True)
    return text
