"""The training loop (electra_ko.training) on a stand-in model: checkpoints, progress,
stop requests, NaN stops, corrupt shards, replicas, compiled steps."""
import dataclasses
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_ko import data, modeling, optimization, training
from test_data import write_shards
from test_pretrain import SEQ, _cfg, _checkpoint_values, corpus_dir  # noqa: F401 (a fixture)


class StandIn(keras.Model):
    """Embedding -> LayerNorm -> stateless dropout -> Dense, predicting the input ids."""

    def __init__(self):
        super().__init__()
        self.embed = keras.layers.Embedding(64, 8)
        self.norm = keras.layers.LayerNormalization()
        self.out = keras.layers.Dense(64)
        self.out(self.norm(self.embed(tf.zeros([1, SEQ], tf.int32))))


def stand_in_task(model, global_batch, poison_after=None):
    def loss_fn(features, seed, training):
        ids = features["input_ids"]
        hidden = modeling.dropout(model.norm(model.embed(ids)), 0.1, seed, training)
        nll = keras.losses.sparse_categorical_crossentropy(ids, model.out(hidden),
                                                           from_logits=True)
        loss = tf.reduce_sum(tf.reduce_mean(nll, axis=1)) / global_batch
        if poison_after is not None:
            loss += tf.math.log(tf.cast(poison_after - tf.reduce_sum(seed * 0) > 0, tf.float32))
        return loss, {}
    return training.Task(model, loss_fn, lambda sums: {}, {})


def _stand_in_trainer(corpus_dir, model_dir, strategy=None, **values):
    strategy = strategy or tf.distribute.get_strategy()
    cfg = _cfg(corpus_dir, model_dir, **values)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = StandIn()
    files = data.shard_files(cfg.pretrain_tfrecords)
    def make_dataset(step):
        return data.distributed_dataset(strategy, files, cfg.train_batch_size, SEQ, seed=cfg.seed,
                                        first_step=step)
    with strategy.scope():
        optimizer = optimization.create_optimizer(cfg)
    return training.Trainer(strategy, training.LoopSettings.from_config(cfg),
                            stand_in_task(model, cfg.train_batch_size), optimizer, make_dataset,
                            cfg.model_dir,
                            data_error=lambda e: data.corrupt_shard_error(files, "", e))


def test_stand_in_trains_saves_numbered_checkpoints_and_prints_progress(corpus_dir, tmp_path,
                                                                        capsys):
    trainer = _stand_in_trainer(corpus_dir, tmp_path, num_train_steps=8, keep_checkpoint_max=5)
    assert trainer.train() == 8
    assert trainer.trace_counts() == {"loop": 1, "loss_and_grads": 1, "apply_gradients": 1}
    assert sorted(os.path.basename(p) for p in trainer.manager.checkpoints) == ["ckpt-4", "ckpt-8"]
    lines = [line for line in capsys.readouterr().out.splitlines() if "step=" in line]
    assert [line.split()[:2] for line in lines] == [["train", f"step={s}/8"] for s in (2, 4, 6, 8)]
    number = r"[-+.e\d]+"
    for line in lines:  # the whole line is ours: no log prefix
        assert re.fullmatch(rf"train step=\d/8 loss={number} grad_norm={number} lr={number} "
                            rf"seq_per_s={number} eta=\d+:\d\d:\d\d", line), line
    events = tf.compat.v1.train.summary_iterator(str(next((tmp_path / "train").iterdir())))
    logged = {(e.step, v.tag) for e in events for v in e.summary.value}
    assert {(8, "loss"), (8, "lr"), (2, "seq_per_s")} <= logged


def test_progress_values_have_four_significant_digits():
    metrics = {"loss": 31.81234, "lr": 0.000512345, "seq_per_s": 1234.56, "disc_auc": 0.5}
    assert training.format_metrics(metrics) == "loss=31.81 lr=0.0005123 seq_per_s=1235 disc_auc=0.5"


def test_stop_request_during_a_device_call_saves_that_step(corpus_dir, tmp_path, monkeypatch):
    trainer = _stand_in_trainer(corpus_dir, tmp_path, num_train_steps=100, iterations_per_loop=50,
                                stop_check_secs=1e-9)
    run = trainer.run_steps

    def signalled_during_third_call(n):
        step = run(n)
        if step == 3:
            trainer.request_stop()
        return step
    monkeypatch.setattr(trainer, "run_steps", signalled_during_third_call)
    assert trainer.train() == 3
    assert trainer.manager.latest_checkpoint.endswith("ckpt-3")


def test_device_calls_fit_the_stop_check_interval(corpus_dir, tmp_path, monkeypatch):
    trainer = _stand_in_trainer(corpus_dir, tmp_path, num_train_steps=60, iterations_per_loop=60,
                                save_checkpoints_steps=60, stop_check_secs=1e-9)
    calls = []
    monkeypatch.setattr(trainer, "run_steps", lambda n, run=trainer.run_steps: calls.append(n) or run(n))
    assert trainer.train(stop_at=5) == 5
    assert calls == [1] * 5  # one step per call when a step takes longer than the interval
    trainer.settings = dataclasses.replace(trainer.settings, stop_check_secs=1e9)
    calls.clear()
    assert trainer.train() == 60
    assert calls == [55]


def test_nan_loss_stops_with_clear_message_keeping_last_checkpoint(corpus_dir, tmp_path):
    trainer = _stand_in_trainer(corpus_dir, tmp_path, num_train_steps=8)
    trainer.train(stop_at=4)
    poisoned = stand_in_task(trainer.task.model, 8, poison_after=0)
    trainer.step.task = poisoned
    trainer.step.compile_functions()
    with pytest.raises(training.TrainingError,
                       match=r"NaN or Inf between steps 4 and 6.*last good checkpoint is .*ckpt-4"):
        trainer.train()
    assert trainer.manager.latest_checkpoint.endswith("ckpt-4")


def test_nan_gradients_under_a_finite_loss_stop_before_a_bad_checkpoint(corpus_dir, tmp_path):
    """Step 5's gradients are NaN while its loss is finite: no ckpt-5 of NaN weights."""
    trainer = _stand_in_trainer(corpus_dir, tmp_path, num_train_steps=8, iterations_per_loop=1,
                                save_checkpoints_steps=5, keep_checkpoint_max=5)
    trainer.train(stop_at=4)
    base = trainer.task.loss_fn

    def nan_gradients(features, seed, training):  # sqrt'(0) = Inf: the loss stays finite
        loss, sums = base(features, seed, training)
        return loss + tf.sqrt(tf.abs(trainer.task.model.out.bias[0]) * 0.0), sums
    trainer.step.task = training.Task(trainer.task.model, nan_gradients)
    trainer.step.compile_functions()
    with pytest.raises(training.TrainingError, match=r"NaN or Inf between steps 4 and 5.*ckpt-4"):
        trainer.train()
    assert trainer.manager.latest_checkpoint.endswith("ckpt-4")


def test_corrupt_shard_during_training_is_named(tmp_path, corpus_dir):
    shards = tmp_path / "shards"
    write_shards(str(shards), num_shards=2, per_shard=16, seq_len=SEQ)
    victim = sorted(shards.glob("pretrain_data*"))[1]
    victim.write_bytes(victim.read_bytes()[:-5])
    trainer = _stand_in_trainer(corpus_dir, tmp_path / "model", num_train_steps=40,
                                pretrain_tfrecords=str(shards))
    with pytest.raises(data.DataError, match=f"corrupt pretraining shard: {victim}"):
        trainer.train()


def test_two_replicas_match_one_device_for_the_same_global_batch(corpus_dir, tmp_path,
                                                                 two_cpu_strategy):
    """Loss sum over replicas, all-reduced + clipped gradients: the same update."""
    results = []
    for name, strategy in (("one", tf.distribute.get_strategy()), ("two", two_cpu_strategy)):
        trainer = _stand_in_trainer(corpus_dir, tmp_path / name, strategy, num_train_steps=4,
                                    clip_norm=0.5)
        trainer.train()
        results.append(_checkpoint_values(tmp_path / name))
    assert results[0].keys() == results[1].keys()
    for key in results[0]:
        np.testing.assert_allclose(results[0][key], results[1][key], rtol=2e-5, atol=1e-6,
                                   err_msg=key)


def test_resume_under_two_replicas_is_exact_without_iterator_state(corpus_dir, tmp_path,
                                                                   two_cpu_strategy):
    """The input restarts from the global step (TPUStrategy cannot save its iterator):
    stopped at step 3 of 6 and resumed, a two-replica run ends bit-identical."""
    whole = _stand_in_trainer(corpus_dir, tmp_path / "whole", two_cpu_strategy, num_train_steps=6)
    whole.train()
    _stand_in_trainer(corpus_dir, tmp_path / "parts", two_cpu_strategy,
                      num_train_steps=6).train(stop_at=3)
    saved = [name for name, _ in tf.train.list_variables(str(tmp_path / "parts"))]
    assert not [name for name in saved if "iterator" in name]
    resumed = _stand_in_trainer(corpus_dir, tmp_path / "parts", two_cpu_strategy,
                                num_train_steps=6)
    assert resumed.restore() == 3
    assert resumed.train() == 6
    a, b = _checkpoint_values(tmp_path / "whole"), _checkpoint_values(tmp_path / "parts")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_compiled_update_matches_the_uncompiled_one(corpus_dir, tmp_path):
    """Both XLA clusters of a step (loss with gradients and clipping; the AdamW update)
    change the weights as op-by-op execution does."""
    weights = {}
    for jit in (False, True):
        trainer = _stand_in_trainer(corpus_dir, tmp_path / str(jit), num_train_steps=2,
                                    jit_compile=jit, clip_norm=0.05)
        start = [v.numpy() for v in trainer.task.model.trainable_variables]
        assert trainer.train() == 2
        weights[jit] = [v.numpy() for v in trainer.task.model.trainable_variables]
    moved = max(np.abs(a - b).max() for a, b in zip(start, weights[True]))
    assert moved > 1e-4  # two AdamW steps at lr 1e-3 (warm-up) moved the weights
    for plain, compiled in zip(weights[False], weights[True]):
        np.testing.assert_allclose(plain, compiled, rtol=1e-4, atol=1e-6)
