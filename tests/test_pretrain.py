"""Pretraining driver: loop, checkpoints, exact resume, strategies, XLA, NaN stop, CLI,
starting from a checkpoint."""
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from electra_ko import (architecture, checkpoints, config, data, export, finetune, masking,
                        modeling, randomness, optimization, pretrain, training, vocab)
from electra_ko import model_dir as model_dir_lib
from electra_ko.checkpoints import CheckpointError
from test_data import write_shards
from test_storage import plant_temporaries

SEQ = 16
FLAGS = flags.FLAGS
if "dry_run" not in FLAGS:
    pretrain.define_flags()
FLAGS.mark_as_parsed()

# A debug-size ELECTRA shrunk further: seconds to trace on two shared cores.
TINY = dict(model_size="debug", max_seq_length=SEQ, train_batch_size=8, hidden_size=16,
            embedding_size=16, num_hidden_layers=1, num_attention_heads=1, intermediate_size=32,
            generator_hidden_size=0.5, num_warmup_steps=2, iterations_per_loop=2,
            save_checkpoints_steps=4, jit_compile=False, learning_rate=1e-3)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """vocab.txt + 3 shards built with its sha256."""
    directory = tmp_path_factory.mktemp("pretrain_data")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"tok{i}" for i in range(59)]
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tokenizer = vocab.load_tokenizer(str(directory / "vocab.txt"))
    write_shards(str(directory / "shards"), num_shards=3, per_shard=16, seq_len=SEQ,
                 vocab_size=tokenizer.vocab_size, vocab_sha256=tokenizer.vocab_sha256)
    return directory


def _cfg(corpus_dir, model_dir, **values):
    paths = dict(vocab_file=str(corpus_dir / "vocab.txt"),
                 pretrain_tfrecords=str(corpus_dir / "shards"), model_dir=str(model_dir))
    return config.load_config(config.PRETRAIN, **{**TINY, **paths, **values})


def _checkpoint_values(model_dir):
    reader = tf.train.load_checkpoint(str(model_dir))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "model/" in name or "optimizer/" in name or "global_step" in name}


# ------------------------------------------------------------------ CLI: preemption

@pytest.mark.slow
def test_sigterm_saves_the_current_step_within_seconds_and_exits_75(corpus_dir, tmp_path):
    """A preempted TPU gets ~30 s: the run must not finish its 100000-step loop first."""
    args = [sys.executable, "-m", "electra_ko.pretrain", "--vocab_file", str(corpus_dir / "vocab.txt"),
            "--pretrain_tfrecords", str(corpus_dir / "shards"), "--model_dir", str(tmp_path),
            "--set", "num_train_steps=1000000", "--set", "iterations_per_loop=100000",
            "--set", "save_checkpoints_steps=100000", "--set", "stop_check_secs=2"]
    args += [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()
             if k not in ("iterations_per_loop", "save_checkpoints_steps")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, CUDA_VISIBLE_DEVICES=""))
    output = []
    for line in proc.stdout:
        output.append(line)
        if line.startswith("training from step 0"):
            break
    time.sleep(4)
    signalled = time.time()
    proc.send_signal(signal.SIGTERM)
    output += proc.communicate(timeout=120)[0].splitlines(keepends=True)
    waited = time.time() - signalled
    assert proc.returncode == training.EXIT_PREEMPTED == 75, "".join(output[-30:])
    assert waited < 15, waited
    step = int(tf.train.load_checkpoint(str(tmp_path)).get_tensor(
        "global_step/.ATTRIBUTES/VARIABLE_VALUE"))
    assert 1 <= step < 100000
    assert re.search(rf"preempted at step {step}", "".join(output)), "".join(output[-30:])
    assert json.loads((tmp_path / model_dir_lib.STOPPED_EARLY_FILE).read_text()) == {
        "step": step, "reason": "SIGTERM (preempted)"}


# ------------------------------------------------------------------ real ELECTRA model

@pytest.fixture(scope="module")
def trained_model_dir(corpus_dir, tmp_path_factory):
    """A finished 4-step deterministic run (checkpoints, config.json, exported towers)."""
    model_dir = tmp_path_factory.mktemp("trained")
    assert pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=4),
                        deterministic=True)["step"] == 4
    return model_dir


def test_exact_resume_matches_uninterrupted_run(corpus_dir, trained_model_dir, tmp_path):
    assert pretrain.run(_cfg(corpus_dir, tmp_path, num_train_steps=4),
                        deterministic=True, stop_at=2)["step"] == 2
    assert not (tmp_path / "discriminator").exists()
    assert pretrain.run(_cfg(corpus_dir, tmp_path, num_train_steps=4),
                        deterministic=True)["step"] == 4
    a, b = _checkpoint_values(trained_model_dir), _checkpoint_values(tmp_path)
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _shard_batch(corpus_dir):
    files = data.shard_files(str(corpus_dir / "shards"))
    return next(iter(data.make_dataset(files, 8, SEQ, training=False)))


def _restored_pretrainer(corpus_dir, model_dir, step=None):
    """The model of the newest checkpoint (or of `step`), restored as the trainer resumes it.

    The optimizer is part of it: it tracks every trainable variable, while the Keras
    model alone does not expose its Transformer layers (a list) to tf.train.Checkpoint.
    """
    cfg, _ = pretrain.with_vocab(_cfg(corpus_dir, model_dir, num_train_steps=4))
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    optimizer = optimization.create_optimizer(cfg)
    optimization.build_optimizer(optimizer, model.trainable_variables)
    prefix = tf.train.latest_checkpoint(str(model_dir)) if step is None else (
        str(model_dir / f"ckpt-{step}"))
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(
        prefix).assert_existing_objects_matched()
    return model


def test_exported_towers_reload_with_the_trained_weights(corpus_dir, trained_model_dir):
    """`checkpoints.read_model_dir` on a pretraining model_dir takes the towers in its
    subdirectories, not the training config.json next to them; each tower predicts like
    the checkpointed model."""
    saved = json.loads((trained_model_dir / "config.json").read_text())
    assert saved["vocab_size"] == 64 and saved["num_train_steps"] == 4
    source = checkpoints.read_model_dir(str(trained_model_dir))
    towers, vocab_dir = source.towers, source.vocab
    assert [t.kind for t in towers] == ["discriminator", "generator"]
    assert vocab_dir == str(trained_model_dir / "discriminator")
    assert (trained_model_dir / "generator" / "vocab.txt").exists()
    model = _restored_pretrainer(corpus_dir, trained_model_dir)
    features = _shard_batch(corpus_dir)
    inputs = [features[k] for k in ("input_ids", "input_mask", "segment_ids")]
    positions = tf.tile(tf.range(SEQ)[tf.newaxis], [8, 1])
    expected = {"discriminator": model.discriminator_logits(*inputs),
                "generator": model.generator_logits(*inputs, positions)}
    for tower in towers:
        assert tower.config.vocab_size == 64
        reloaded = checkpoints.model_from_tower(tower)(features)
        np.testing.assert_allclose(reloaded, expected[tower.kind], atol=1e-5, err_msg=tower.kind)


def _assert_same_towers(towers, expected):
    assert [t.kind for t in towers] == [t.kind for t in expected]
    for tower, other in zip(towers, expected):
        assert tower.config == other.config and tower.tensors.keys() == other.tensors.keys()
        for name in tower.tensors:
            np.testing.assert_array_equal(tower.tensors[name], other.tensors[name],
                                          err_msg=f"{tower.kind} {name}")


def test_exported_towers_are_the_newest_checkpoint(corpus_dir, trained_model_dir):
    """A finished run's discriminator/ and generator/ (what export reads by default) hold
    its last checkpoint, which --checkpoint_step reads instead."""
    folders = checkpoints.read_model_dir(str(trained_model_dir)).towers
    newest = checkpoints.read_model_dir(str(trained_model_dir), step=4)
    _assert_same_towers(folders, newest.towers)
    assert newest.vocab == str(corpus_dir / "vocab.txt")


@pytest.fixture(scope="module")
def interrupted_model_dir(corpus_dir, tmp_path_factory):
    """A run stopped at step 4 of 8 (as by SIGTERM, a crash or the NaN guard): config.json,
    run_identity.json and the checkpoints of steps 2 and 4, no exported towers."""
    model_dir = tmp_path_factory.mktemp("interrupted")
    assert pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=8, save_checkpoints_steps=2),
                        deterministic=True, stop_at=4)["step"] == 4
    assert not (model_dir / "discriminator").exists()
    return model_dir


def _export(*argv):
    """`python -m electra_ko.export` with these flags; returns the folders it wrote."""
    fv = flags.FlagValues()
    export.define_flags(fv)
    fv(["export", *argv])
    return export.run(fv)


def test_model_dir_of_checkpoints_alone_exports_any_saved_step(corpus_dir, interrupted_model_dir,
                                                               tmp_path):
    model_dir = str(interrupted_model_dir)
    by_step = {step: checkpoints.pretrainer_towers(
        _restored_pretrainer(corpus_dir, interrupted_model_dir, step)) for step in (2, 4)}
    assert not np.array_equal(*(towers[0].tensors[checkpoints.WORD_EMBEDDINGS]
                                for towers in by_step.values()))
    for name, step, argv in [("newest", 4, ["--model_dir", model_dir]),
                             ("step2", 2, ["--model_dir", model_dir, "--checkpoint_step", "2"]),
                             ("prefix2", 2, ["--model_dir", f"{model_dir}/ckpt-2"])]:
        written = _export(*argv, "--output_dir", str(tmp_path / name))
        assert written == [str(tmp_path / name / kind) for kind in ("discriminator", "generator")]
        _assert_same_towers([checkpoints.read_hf_tower(path) for path in written], by_step[step])
        assert (tmp_path / name / "generator" / "vocab.txt").read_bytes() == (
            corpus_dir / "vocab.txt").read_bytes()


def test_checkpoint_step_that_was_not_saved_is_refused_listing_those_that_were(
        interrupted_model_dir, tmp_path):
    model_dir, out = str(interrupted_model_dir), str(tmp_path / "out")
    saved = rf"{model_dir} has no checkpoint of step 3 \(ckpt-3.index\); steps saved: 2, 4$"
    for argv in (["--model_dir", model_dir, "--checkpoint_step", "3"],
                 ["--model_dir", f"{model_dir}/ckpt-3"]):
        with pytest.raises(CheckpointError, match=saved):
            _export(*argv, "--output_dir", out)
    with pytest.raises(CheckpointError, match="is the checkpoint of step 2, but step 4 was asked"):
        _export("--model_dir", f"{model_dir}/ckpt-2", "--checkpoint_step", "4", "--output_dir", out)
    with pytest.raises(CheckpointError, match=f"--checkpoint_step 2: {tmp_path} is not a "
                                              "pretraining model_dir"):
        _export("--model_dir", str(tmp_path), "--checkpoint_step", "2", "--output_dir", out)
    with pytest.raises(CheckpointError, match="--checkpoint_step goes with --model_dir"):
        _export("--init_checkpoint", model_dir, "--checkpoint_step", "2", "--output_dir", out)
    assert list(tmp_path.iterdir()) == []


def test_fine_tuning_starts_from_a_model_dir_of_checkpoints_alone(corpus_dir, interrupted_model_dir):
    for path, step in ((interrupted_model_dir, 4), (interrupted_model_dir / "ckpt-2", 2)):
        fv = types.SimpleNamespace(vocab=None, init_checkpoint=str(path))
        assert finetune.default_vocab(fv) == str(corpus_dir / "vocab.txt")
        init = finetune.load_init_checkpoint(str(path), finetune.resolve_config())
        assert init.path == str(interrupted_model_dir / f"ckpt-{step}")
        discriminator = _restored_pretrainer(corpus_dir, interrupted_model_dir, step)
        expected = checkpoints.tower_from_pretrainer(discriminator, "discriminator").tensors
        assert init.tensors.keys() == expected.keys()
        for name, value in expected.items():
            np.testing.assert_array_equal(init.tensors[name], value, err_msg=name)


def test_silent_discriminator_gets_one_warning_after_warm_up(corpus_dir, tmp_path, caplog):
    cfg = _cfg(corpus_dir, tmp_path, num_warmup_steps=10, disc_health_check_steps=20)
    check = masking.discriminator_health_check(cfg)
    silent = {"disc_precision": 0.0, "disc_recall": 0.0, "disc_auc": 0.5}
    check(20, silent)  # still within warm-up + disc_health_check_steps
    check(30, dict(silent, disc_precision=0.5, disc_recall=0.1))
    assert "discriminator health" not in caplog.text
    for step in (40, 50):
        check(step, silent)
    warnings = [r.getMessage() for r in caplog.records if "discriminator health" in r.getMessage()]
    assert len(warnings) == 1
    assert "still 0 at step 40, 30 steps after warm-up" in warnings[0]
    assert "embedding_sharing=gdes" in warnings[0] and "--init_checkpoint" in warnings[0]
    off = masking.discriminator_health_check(cfg.replace(disc_health_check_steps=0))
    off(1000, silent)
    assert len([r for r in caplog.records if "discriminator health" in r.getMessage()]) == 1


@pytest.mark.parametrize("sharing", ["tied", "gdes"])
def test_xla_step_gives_the_same_loss_and_gradients_as_eager(corpus_dir, tmp_path, sharing):
    """The trainer's jit-compiled forward/backward pass of the ELECTRA task (masking,
    generator sampling, both towers, AUC sums) against op-by-op execution."""
    cfg, tokenizer = pretrain.with_vocab(_cfg(corpus_dir, tmp_path, num_train_steps=4,
                                              embedding_sharing=sharing))
    keras.utils.set_random_seed(0)
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    objective = masking.ObjectiveConfig.from_config(cfg, tokenizer.special_ids)
    task = masking.electra_task(cfg, model, objective)
    batch = _shard_batch(corpus_dir)
    seed = randomness.step_seed(cfg.seed, 3)

    def loss_grad_norm_and_sums(features):
        with tf.GradientTape() as tape:
            loss, sums = task.loss_fn(features, seed, True)
        grads = tape.gradient(loss, model.trainable_variables)
        # dense, as the trainer takes them: the norm of a sparse gradient with repeated rows
        # depends on whether they were summed (graph) or not (eager)
        return loss, tf.linalg.global_norm(optimization.dense_gradients(grads)), sums
    eager = loss_grad_norm_and_sums(batch)
    xla = tf.function(loss_grad_norm_and_sums, jit_compile=True)(batch)
    np.testing.assert_allclose(eager[0], xla[0], rtol=1e-5)
    np.testing.assert_allclose(eager[1], xla[1], rtol=1e-4)
    assert eager[2].keys() == xla[2].keys()
    for name, value in eager[2].items():  # AUC histograms: a token may sit on a bin edge
        reduce = np.sum if name.startswith("auc_") else np.asarray
        np.testing.assert_allclose(reduce(value), reduce(xla[2][name]), rtol=1e-4, err_msg=name)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_with_multi_worker_mirrored_end_identical(corpus_dir, tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [sys.executable, "-m", "electra_ko.pretrain", "--strategy", "multi_worker",
            "--vocab_file", str(corpus_dir / "vocab.txt"),
            "--pretrain_tfrecords", str(corpus_dir / "shards"), "--model_dir", str(tmp_path),
            "--set", "num_train_steps=2", "--deterministic"]
    args += [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}),
            CUDA_VISIBLE_DEVICES="")
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "replicas=2" in outputs[0]
    chief, other = _checkpoint_values(tmp_path), _checkpoint_values(tmp_path / ".worker-1")
    assert chief.keys() == other.keys()
    for key in chief:
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)


# ------------------------------------------------------------------ CLI

def _main(capsys, *argv):
    FLAGS.unparse_flags()
    FLAGS(["pretrain", *argv])
    code = pretrain.main(["pretrain"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_unknown_config_key_is_named(capsys, corpus_dir, tmp_path):
    code, _, err = _main(capsys, "--vocab", str(corpus_dir / "vocab.txt"),  # or --vocab_file
                         "--model_dir", str(tmp_path), "--set", "learning_rat=1e-4")
    assert code == 1
    assert "unknown config key 'learning_rat' in --set (did you mean 'learning_rate'?)" in err


def test_cli_vocab_mismatch_with_shards_is_refused(capsys, corpus_dir, tmp_path):
    shards = tmp_path / "other"
    write_shards(str(shards), seq_len=SEQ, vocab_size=64, vocab_sha256="f00")
    code, _, err = _main(capsys, "--vocab_file", str(corpus_dir / "vocab.txt"),
                         "--pretrain_tfrecords", str(shards), "--model_dir", str(tmp_path),
                         "--set", "max_seq_length=16", "--dry_run")
    assert code == 1 and "vocab_sha256='f00' but the model uses" in err


def test_original_electra_config_file_loads_and_dry_run_reports_sizes(capsys, corpus_dir,
                                                                      tmp_path):
    """Keys of a KoSentELECTRA-style `pretrain_config/base-v1.json` load unchanged."""
    original = {"use_tpu": False, "num_tpu_cores": 8, "tpu_name": "my-tpu",
                "tpu_zone": "europe-west4-a", "model_size": "base", "vocab_size": 64,
                "do_lower_case": False, "learning_rate": 2e-4, "keep_checkpoint_max": 3,
                "train_batch_size": 256, "save_checkpoints_steps": 50000,
                "num_train_steps": 700000, "max_seq_length": 512,
                "generator_hidden_size": 0.33333,
                "model_hparam_overrides": {"num_hidden_layers": 1}}
    path = tmp_path / "base-v1.json"
    path.write_text(json.dumps(original))
    code, out, _ = _main(capsys, "--config", str(path), "--vocab_file",
                         str(corpus_dir / "vocab.txt"), "--model_dir", str(tmp_path / "m"),
                         "--dry_run")
    assert code == 0
    printed = json.loads(out[:out.index("\n}\n") + 2])
    assert printed["hidden_size"] == 768 and printed["num_hidden_layers"] == 1
    assert printed["keep_checkpoint_max"] == 3 and printed["tpu_zone"] == "europe-west4-a"
    model = modeling.ElectraPretrainer.from_project_config(config.load_config(
        config.PRETRAIN, str(path)))
    expected = pretrain.parameter_counts(model)
    assert f"parameters: total={expected['total']:,}" in out
    assert json.loads(out.strip().splitlines()[-1])["parameters"] == expected
    assert not (tmp_path / "m").exists()  # a dry run writes nothing


def test_dry_run_needs_only_a_config_that_gives_vocab_size(capsys, tmp_path):
    path = tmp_path / "sized.json"
    path.write_text(json.dumps({"model_size": "small", "vocab_size": 32000}))
    code, out, err = _main(capsys, "--config", str(path), "--dry_run")
    assert code == 0, err
    expected = pretrain.parameter_counts(modeling.ElectraPretrainer.from_project_config(
        config.load_config(config.PRETRAIN, str(path))))
    assert json.loads(out.strip().splitlines()[-1])["parameters"] == expected


def test_dry_run_reads_every_shard_and_names_a_corrupt_one(capsys, corpus_dir, tmp_path):
    shards = shutil.copytree(corpus_dir / "shards", tmp_path / "shards")
    args = ("--vocab_file", str(corpus_dir / "vocab.txt"), "--pretrain_tfrecords", str(shards),
            "--model_dir", str(tmp_path / "model"),
            "--set", "model_size=debug", "--set", f"max_seq_length={SEQ}", "--dry_run")
    code, out, _ = _main(capsys, *args)
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["records"] == 3 * 16
    victim = sorted(shards.glob("pretrain_data*"))[2]
    content = bytearray(victim.read_bytes())
    content[12 + 3] ^= 1  # in the first record's data
    victim.write_bytes(content)
    code, _, err = _main(capsys, *args)
    assert code == 1
    assert f"error: corrupt pretraining shard {victim} at byte 0: the " in err


@pytest.mark.parametrize("name", ["debug", "tiny", "small", "base", "large"])
def test_shipped_configs_are_valid(name):
    path = os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.json")
    cfg = config.load_config(config.PRETRAIN, path)
    assert cfg.model_size == name


def test_two_stage_configs_fit_together():
    """Phase 2 (ELECTRA) starts its discriminator from phase 1's masked LM, so the
    encoder, sequence length and position init must be the same."""
    directory = os.path.join(os.path.dirname(__file__), "..", "configs")
    mlm, electra = (config.load_config(config.PRETRAIN, os.path.join(directory, f"tiny_two_stage_{p}.json"))
                    for p in ("mlm", "electra"))
    assert (mlm.electra_objective, electra.electra_objective) == (False, True)
    for key in architecture.PRESET_KEYS + ("max_seq_length", "position_embedding_init",
                                           "hidden_dropout_prob"):
        assert getattr(mlm, key) == getattr(electra, key), key
    assert electra.generator_sizes()["hidden_size"] < electra.hidden_size  # a fresh, smaller generator


def test_small_budget_masked_lm_config_is_the_headline_recipe():
    """configs/tiny_mlm.json holds the README's headline flags (18000 masked-LM steps)."""
    path = os.path.join(os.path.dirname(__file__), "..", "configs", "tiny_mlm.json")
    cfg = config.load_config(config.PRETRAIN, path)
    assert (cfg.electra_objective, cfg.num_train_steps, cfg.num_warmup_steps,
            cfg.position_embedding_init, cfg.hidden_dropout_prob) == (
        False, 18000, 500, "sinusoidal", 0.0)


# ------------------------------------------------------------------ resuming safely

def _copy_of(model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def test_resume_with_another_architecture_is_refused_before_writing(corpus_dir, trained_model_dir,
                                                                     tmp_path):
    model_dir = _copy_of(trained_model_dir, tmp_path)
    before = (model_dir / "config.json").read_text()
    with pytest.raises(config.ConfigError, match=r"another architecture \(embedding_size: 16 there, "
                                                 r"24 now; hidden_size: 16 there, 24 now\)"):
        pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=6, hidden_size=24,
                          embedding_size=24))
    assert (model_dir / "config.json").read_text() == before


def test_resume_with_another_vocab_of_the_same_size_is_refused(corpus_dir, trained_model_dir,
                                                               tmp_path):
    model_dir = _copy_of(trained_model_dir, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"word{i}" for i in range(59)]
    (other / "vocab.txt").write_text("\n".join(tokens) + "\n")
    tokenizer = vocab.load_tokenizer(str(other / "vocab.txt"))
    write_shards(str(other / "shards"), num_shards=3, per_shard=16, seq_len=SEQ,
                 vocab_size=tokenizer.vocab_size, vocab_sha256=tokenizer.vocab_sha256)
    cfg = _cfg(corpus_dir, model_dir, num_train_steps=6, vocab_file=str(other / "vocab.txt"),
               pretrain_tfrecords=str(other / "shards"))
    with pytest.raises(config.ConfigError, match="trained with another vocabulary .* start over"):
        pretrain.run(cfg)


def test_resume_with_rebuilt_shards_continues_with_a_warning(corpus_dir, trained_model_dir,
                                                             tmp_path, caplog):
    model_dir = _copy_of(trained_model_dir, tmp_path)
    tokenizer = vocab.load_tokenizer(str(corpus_dir / "vocab.txt"))
    write_shards(str(tmp_path / "rebuilt"), num_shards=2, per_shard=20, seq_len=SEQ, seed=5,
                 vocab_size=tokenizer.vocab_size, vocab_sha256=tokenizer.vocab_sha256)
    summary = pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=6,
                                pretrain_tfrecords=str(tmp_path / "rebuilt")), stop_at=5)
    assert summary["step"] == 5
    assert "pretraining shards changed" in caplog.text


def test_second_run_into_a_busy_model_dir_stops_and_a_stale_lock_is_broken(corpus_dir, tmp_path,
                                                                          caplog):
    lock = tmp_path / model_dir_lib.LOCK_FILE
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))
    cfg = _cfg(corpus_dir, tmp_path, num_train_steps=2)
    with pytest.raises(config.ConfigError, match=rf"another run is training into this model_dir "
                                                 rf"\(pid {os.getpid()} .*delete .*RUNNING.lock"):
        pretrain.run(cfg)
    assert not (tmp_path / "config.json").exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead)}))
    assert pretrain.run(cfg)["step"] == 2
    assert "breaking the stale lock" in caplog.text
    assert not lock.exists()  # released at the end


def test_a_run_that_trains_on_removes_the_stopped_early_marker(corpus_dir, trained_model_dir,
                                                               tmp_path):
    model_dir = _copy_of(trained_model_dir, tmp_path)
    model_dir_lib.mark_stopped_early(str(model_dir), 4, "SIGTERM (preempted)")
    assert pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=5))["step"] == 5
    assert not (model_dir / model_dir_lib.STOPPED_EARLY_FILE).exists()


def test_do_train_false_evaluates_the_checkpoint_and_writes_results_txt_and_pkl(
        corpus_dir, trained_model_dir, tmp_path):
    """google-research/electra's evaluate-only run: no training step, metrics written to
    results_txt and results_pkl."""
    model_dir = _copy_of(trained_model_dir, tmp_path)
    before = _checkpoint_values(model_dir)
    txt, pkl = tmp_path / "results" / "eval.txt", tmp_path / "eval.pkl"
    summary = pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=8, do_train=False,
                                do_eval=True, num_eval_steps=1, eval_batch_size=4,
                                results_txt=str(txt), results_pkl=str(pkl)))
    assert summary["step"] == 4
    after = _checkpoint_values(model_dir)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-4")
    metrics = pickle.loads(pkl.read_bytes())
    assert metrics.keys() == summary["eval"].keys() and "disc_auc" in metrics
    first = next(iter(summary["eval"]))
    assert txt.read_text().splitlines()[0] == f"{first} = {summary['eval'][first]}"


def test_num_tpu_cores_must_match_the_slice():
    training.check_tpu_cores(config.load_config(config.PRETRAIN), 8)  # not given: any slice
    training.check_tpu_cores(config.load_config(config.PRETRAIN, num_tpu_cores=8), 8)
    with pytest.raises(config.ConfigError, match="'num_tpu_cores' is 8, but the TPU has 32 cores"):
        training.check_tpu_cores(config.load_config(config.PRETRAIN, num_tpu_cores=8), 32)


def test_list_keys_prints_every_key(capsys):
    _, out, _ = _main(capsys, "--list_keys")
    printed = out.splitlines()
    assert [line.split()[0] for line in printed] == sorted(config.PRETRAIN)


def test_a_run_removes_what_killed_runs_left_in_its_model_dir(corpus_dir, tmp_path, caplog):
    model_dir = tmp_path / "model"
    leftovers = ["ckpt-4_temp/", "checkpoint.tmp" + "0a" * 16, ".config.json.k1ll3d00.tmp",
                 ".run_identity.json.k1ll3d00.tmp"]
    plant_temporaries(str(model_dir), leftovers + [".keep", ".worker-1/", "ckpt_temp/"])
    plant_temporaries(str(model_dir / "discriminator"), [".staging-k1ll3d00/", ".keep"])
    assert pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=2))["step"] == 2
    names = set(os.listdir(model_dir))
    assert {".keep", ".worker-1", "ckpt_temp"} <= names
    assert not names & {name.rstrip("/") for name in leftovers}
    assert ".keep" in os.listdir(model_dir / "discriminator")
    assert not [name for name in os.listdir(model_dir / "discriminator") if "staging" in name]
    assert (f"removed what killed runs left in {model_dir}: "
            + ", ".join(sorted(name.rstrip("/") for name in leftovers))) in caplog.text
    assert f"left in {model_dir / 'discriminator'}: .staging-k1ll3d00" in caplog.text


def test_evaluating_no_data_is_refused_not_reported_as_nan(corpus_dir, trained_model_dir, tmp_path):
    model_dir = _copy_of(trained_model_dir, tmp_path)
    before = _checkpoint_values(model_dir)
    with pytest.raises(data.DataError, match=r"nothing to evaluate: .*tfrecord-00002-of-00003\) "
                                             r"holds 16 examples, fewer than one batch"):
        pretrain.run(_cfg(corpus_dir, model_dir, num_train_steps=8, do_eval=True,
                          eval_batch_size=64))
    after = _checkpoint_values(model_dir)  # refused before training
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert not (model_dir / "eval_results.txt").exists()
