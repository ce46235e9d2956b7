"""The classifier (electra_ko.classifier): its model and head names, layer-wise learning
rates, length-bucketed batches, and its training step, which learns and runs the same with
one or several steps per device call."""
import numpy as np
import pytest
import tensorflow as tf

from electra_ko import checkpoints, classifier, finetune, tasks
from test_finetune import FILLER, NEGATIVE, POSITIVE, SPECIALS, tiny_config, write_nsmc


def test_default_recipe_learns_within_a_hundred_steps(tmp_path):
    """Warm-up, schedule, layer-wise rates, clipping and the XLA step together, at the
    debug size's default learning rate: a random model must leave chance (0.693) within
    120 steps. With layer-wise decay 0.8 it would still be at 0.68."""
    write_nsmc(tmp_path / "train.txt", 1920, seed=3)
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIALS + POSITIVE + NEGATIVE + FILLER) + "\n",
                                        encoding="utf-8")
    cfg = finetune.random_init_recipe(finetune.resolve_config(
        overrides=["model_size=debug"], vocab_file=str(tmp_path / "vocab.txt"),
        train_batch_size=16, max_seq_length=16, vocab_size=14))
    examples = tasks.load_splits(tasks.get_task("nsmc").with_files(["train.txt"], "", ""),
                                 str(tmp_path)).train
    data = classifier.encode_split(finetune.vocab_lib.load_tokenizer(cfg.vocab_file), examples, 16)
    runner = classifier.Runner(cfg, tasks.get_task("nsmc"), tf.distribute.get_strategy(), "CPU",
                             120, None)
    batches = classifier.batch_order(data.features["lengths"], 16, np.random.RandomState(0))
    losses = [runner.train_epoch(data, batches[i:i + 10], "train") for i in range(0, 120, 10)]
    assert int(runner.step.numpy()) == 120 and cfg.learning_rate == pytest.approx(1e-3)
    assert losses[0] == pytest.approx(np.log(2), abs=0.02)
    assert losses[-1] < 0.4


@pytest.mark.parametrize("static", [False, True])
def test_steps_per_device_call_do_not_change_training(tmp_path, static, monkeypatch):
    """One step per call or several in one on-device loop: the same weights and loss; with
    the TPU's static shapes too (every batch padded to max_seq_length)."""
    write_nsmc(tmp_path / "train.txt", 96, seed=5)
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIALS + POSITIVE + NEGATIVE + FILLER) + "\n",
                                        encoding="utf-8")
    examples = tasks.load_splits(tasks.get_task("nsmc").with_files(["train.txt"], "", ""),
                                 str(tmp_path)).train
    results = []
    for per_call in (1, 4):
        cfg = finetune.random_init_recipe(finetune.resolve_config(
            overrides=["model_size=debug"], vocab_file=str(tmp_path / "vocab.txt"),
            train_batch_size=16, max_seq_length=32, vocab_size=14, iterations_per_loop=per_call))
        data = classifier.encode_split(finetune.vocab_lib.load_tokenizer(cfg.vocab_file),
                                       examples, 32)
        runner = classifier.Runner(cfg, tasks.get_task("nsmc"), tf.distribute.get_strategy(), "CPU",
                                   6, None)
        runner.train_step.static_shapes = static
        batches = classifier.batch_order(data.features["lengths"], 16, np.random.RandomState(0))
        loss = runner.train_epoch(data, batches, "train")
        widths = {b["input_ids"].shape[1] for b in runner._dataset(data, batches, 16)}
        assert widths == {32} if static else widths <= {16, 32}
        results.append((loss, runner.get_weights()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_layerwise_multipliers_follow_google_research_electra():
    model = classifier.SequenceClassifier(tiny_config(), 3)
    factors = {name: classifier.layerwise_lr_multipliers([(name, v)], 2, 0.8)[v.path]
               for name, v in model.tf1_weights()}
    # L = 2: embeddings (and their projection) depth 0, layer i depth i + 1, head depth L + 2
    assert factors["electra/embeddings/word_embeddings"] == pytest.approx(0.8 ** 4)
    assert factors["electra/embeddings/LayerNorm/gamma"] == pytest.approx(0.8 ** 4)
    assert factors["electra/embeddings_project/kernel"] == pytest.approx(0.8 ** 4)
    assert factors["electra/encoder/layer_0/attention/self/query/kernel"] == pytest.approx(0.8 ** 3)
    assert factors["electra/encoder/layer_1/output/LayerNorm/beta"] == pytest.approx(0.8 ** 2)
    assert factors["classifier/dense/kernel"] == 1.0 and factors["classifier/out_proj/bias"] == 1.0
    assert len(factors) == len(model.trainable_variables)


def test_classifier_shapes_and_head_names():
    model = classifier.SequenceClassifier(tiny_config(), 3)
    ids = tf.constant([[2, 7, 3, 0]])
    out = model(ids, tf.constant([[1, 1, 1, 0]]), tf.zeros_like(ids))
    assert out.shape == (1, 3) and out.dtype == tf.float32
    names = [checkpoints.hf_name(n) for n, _ in model.tf1_weights()]
    assert ("classifier.out_proj.weight", True) in names
    assert ("electra.encoder.layer.1.output.dense.weight", True) in names


def test_batches_cover_every_example_once_with_zero_weight_padding():
    lengths = np.array([5, 17, 3, 40, 9, 12, 8])
    data = classifier.Encoded({"input_ids": np.ones((7, 64), np.int32),
                             "input_mask": np.ones((7, 64), np.int32),
                             "segment_ids": np.zeros((7, 64), np.int32), "lengths": lengths},
                            np.arange(7, dtype=np.int32) % 2)
    for rng in (None, np.random.RandomState(0)):
        batches = classifier.batch_order(lengths, 3, rng)
        assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    assert classifier.bucket_widths(64) == [16, 32, 64]
    assert classifier.bucket_widths(100) == [16, 32, 64, 100]
    batch = classifier.make_batch(data, np.array([3]), 3, [16, 32, 64], regression=False)
    assert batch["input_ids"].shape == (3, 64)
    assert batch["weight"].tolist() == [1.0, 0.0, 0.0]
    batch = classifier.make_batch(data, np.array([0, 2]), 3, [16, 32, 64], regression=False)
    assert batch["input_ids"].shape == (3, 16) and batch["weight"].tolist() == [0.5, 0.5, 0.0]
