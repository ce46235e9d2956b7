"""What a pretraining model_dir holds besides checkpoints, and the rules for re-using one.

    config.json          the resolved config of the run
    run_identity.json    the vocab (sha256, size) and shards (path, manifest summary) it trains on
    RUNNING.lock         while a run trains into it; the run that takes it first removes the
                         temporaries of runs killed while writing (see `TEMPORARIES`)

A run that resumes the folder's checkpoints may not change its architecture or vocab
(refused, naming the keys or both hashes, before anything is written); other shards of the
same vocab only log, since the input restarts at the global step. A second run into a
folder in use stops at once.
"""
import contextlib
import json
import os
import socket
import time

import tensorflow as tf
from absl import logging

from electra_ko import config as config_lib
from electra_ko import storage, training
from electra_ko.checkpoints import DISCRIMINATOR, GENERATOR


CONFIG_FILE = "config.json"
# What a model_dir's checkpoints are bound to: a run that resumes them must not change it.
RESUME_FIXED_KEYS = tuple(k for k in config_lib._BERT_CONFIG_KEYS if not k.endswith(
    "dropout_prob") and k != "initializer_range") + (
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
        recorded = json.loads(storage.read_text(config_path))
        changed = [f"{key}: {recorded.get(key)!r} there, {getattr(cfg, key)!r} now"
                   for key in RESUME_FIXED_KEYS if key in recorded and recorded[key] != getattr(cfg, key)]
        if changed:
            raise config_lib.ConfigError(
                f"{cfg.model_dir} holds checkpoints of another architecture ({'; '.join(changed)}): "
                "set the keys back to resume, or give another --model_dir to start a new run")
    identity_path = storage.join(cfg.model_dir, RUN_IDENTITY_FILE)
    if not storage.exists(identity_path):
        return
    identity = json.loads(storage.read_text(identity_path))
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
            if storage.create_exclusive(self.path, json.dumps(owner)):
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
            return json.loads(storage.read_text(self.path))
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


def write_config(cfg, model_dir, tokenizer=None, manifest=None):
    """The resolved config (`config.json`) and, with a tokenizer, the vocab and shards the
    run trains on (`run_identity.json`)."""
    storage.makedirs(model_dir)
    text = json.dumps(cfg.to_dict(), indent=2, sort_keys=True)
    storage.write_text(storage.join(model_dir, CONFIG_FILE), text + "\n")
    if tokenizer is not None:
        identity = {"vocab_sha256": tokenizer.vocab_sha256, "vocab_size": tokenizer.vocab_size,
                    "shards": shards_identity(cfg, manifest or {})}
        storage.write_text(storage.join(model_dir, RUN_IDENTITY_FILE),
                           json.dumps(identity, indent=2, sort_keys=True) + "\n")
    return text
