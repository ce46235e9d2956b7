"""Continued pretraining (electra_ko.warm_start, `pretrain --init_checkpoint`): the step-0
losses of the model started from, every checkpoint format, sizes, bad inputs, resume."""
import dataclasses
import os
import shutil

import numpy as np
import pytest

from electra_ko import (checkpoints, config, export, masking, modeling, pretrain, randomness,
                        storage, warm_start)
from electra_ko.checkpoints import CheckpointError
from test_checkpoints import write_tf1_checkpoint
from test_pretrain import TINY, _cfg, _checkpoint_values, _restored_pretrainer, _shard_batch
from test_pretrain import corpus_dir, trained_model_dir  # noqa: F401 (fixtures)
from test_storage import assert_nothing_named_gs


def _warm_started(corpus_dir, model_dir, **values):
    """(model, cfg, log lines) as `pretrain.run` starts it from `init_checkpoint`."""
    cfg, tokenizer = pretrain.with_vocab(_cfg(corpus_dir, model_dir, num_train_steps=4, **values))
    init = pretrain.read_init_checkpoint(cfg, tokenizer)
    cfg = warm_start.sized_config(cfg, init)
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    return model, cfg, warm_start.load(model, init)


def _step0_losses(corpus_dir, model):
    cfg, tokenizer = pretrain.with_vocab(_cfg(corpus_dir, "unused"))
    objective = masking.ObjectiveConfig.from_config(cfg, tokenizer.special_ids)
    _, metrics = masking.pretraining_losses(model, _shard_batch(corpus_dir), randomness.step_seed(7, 0),
                                            objective, training=False)
    return {name: float(metrics[name]) for name in ("mlm_loss", "disc_loss", "disc_accuracy")}


@pytest.fixture(scope="module")
def exported_pair(trained_model_dir, tmp_path_factory):
    """The trained run's exported discriminator/ and generator/ folders, alone."""
    directory = tmp_path_factory.mktemp("exported")
    for part in ("discriminator", "generator"):
        shutil.copytree(trained_model_dir / part, directory / part)
    return directory


def test_start_from_an_exported_pair_gives_the_exported_model_losses(corpus_dir, trained_model_dir,
                                                                     exported_pair, tmp_path):
    expected = _step0_losses(corpus_dir, _restored_pretrainer(corpus_dir, trained_model_dir))
    for source in (exported_pair, trained_model_dir):  # the folders; the newest ckpt
        model, _, lines = _warm_started(corpus_dir, tmp_path, init_checkpoint=str(source))
        assert _step0_losses(corpus_dir, model) == pytest.approx(expected, rel=1e-6), source
        assert lines[0].startswith("discriminator <- discriminator of")
        assert lines[1].startswith("generator <- generator of")
        assert lines[-1] == "optimizer slots and global step: fresh (warm-up applies)"


def test_start_from_a_pair_in_a_bucket_is_the_start_from_the_same_pair_on_disk(
        corpus_dir, tmp_path, gcs_emulator, monkeypatch):
    """`--init_checkpoint gs://...` on a TPU VM: an exported pair (Hugging Face folders, with
    their vocab) in a bucket reads as the same folders on local disk do."""
    import uuid

    cfg, _ = pretrain.with_vocab(_cfg(corpus_dir, tmp_path / "unused"))
    local = tmp_path / "pair"
    pretrain.export_towers(modeling.ElectraPretrainer.from_project_config(cfg), cfg.vocab_file,
                           str(local), cfg.max_seq_length)
    remote = f"gs://{gcs_emulator}/{uuid.uuid4().hex}/pair"
    storage.upload_dir(str(local), remote)
    monkeypatch.chdir(tmp_path)
    def source_format(path):
        location = checkpoints.locate(path)
        return location and location.format
    for part in ("", "/discriminator", "/generator", "/absent"):
        assert source_format(remote + part) == source_format(f"{local}{part}")
    assert source_format(remote) == checkpoints.FOLDERS
    ours, theirs = (warm_start.read(path, None, cfg) for path in (remote, str(local)))
    assert ours.vocab_dir == f"{remote}/discriminator"
    for tower, expected in ((ours.discriminator, theirs.discriminator),
                            (ours.generator, theirs.generator)):
        assert (tower.kind, tower.config) == (expected.kind, expected.config)
        for name, value in expected.tensors.items():
            np.testing.assert_array_equal(tower.tensors[name], value, err_msg=name)
    _, _, lines = _warm_started(corpus_dir, tmp_path / "run", init_checkpoint=remote)
    assert lines[0].startswith(f"discriminator <- discriminator of {remote}")
    assert_nothing_named_gs(tmp_path, os.getcwd())


def test_start_from_a_tf1_checkpoint_gives_the_same_losses(corpus_dir, trained_model_dir, tmp_path):
    trained = _restored_pretrainer(corpus_dir, trained_model_dir)
    prefix = write_tf1_checkpoint(tmp_path, {name: variable.numpy() for name, variable
                                             in trained.tf1_weights()})
    model, cfg, _ = _warm_started(corpus_dir, tmp_path / "run", init_checkpoint=prefix)
    assert (cfg.hidden_size, cfg.generator_hidden_size) == (16, 0.5)
    assert _step0_losses(corpus_dir, model) == pytest.approx(
        _step0_losses(corpus_dir, trained), rel=1e-6)


def test_sizes_come_from_the_checkpoint_and_a_contradicting_key_is_named(corpus_dir, exported_pair,
                                                                        tmp_path):
    base = {k: v for k, v in TINY.items() if k not in ("hidden_size", "intermediate_size")}
    cfg = config.load_config(config.PRETRAIN, **base, vocab_file=str(corpus_dir / "vocab.txt"),
                             model_dir=str(tmp_path), init_checkpoint=str(exported_pair))
    cfg, tokenizer = pretrain.with_vocab(cfg)
    init = pretrain.read_init_checkpoint(cfg, tokenizer)
    assert warm_start.sized_config(cfg, init).hidden_size == 16  # "debug" alone says 32
    with pytest.raises(config.ConfigError, match="config key 'hidden_size' is 32 but "
                                                 "--init_checkpoint .* has 16"):
        warm_start.sized_config(cfg.replace(hidden_size=32), init)


def test_discriminator_alone_gets_a_fresh_generator_and_a_masked_lm_fills_the_encoder(
        corpus_dir, exported_pair, trained_model_dir, tmp_path):
    _, _, lines = _warm_started(corpus_dir, tmp_path,
                                init_checkpoint=str(exported_pair / "discriminator"))
    assert lines[1] == "generator <- fresh (the checkpoint has no generator of this size)"
    # the generator of the pair, read alone, is a masked LM: it fills the discriminator's
    # encoder and embeddings, and the generator when that has its sizes
    model, cfg, lines = _warm_started(corpus_dir, tmp_path,
                                      init_checkpoint=str(exported_pair / "generator"),
                                      generator_hidden_size=1.0, hidden_size=None,
                                      intermediate_size=None)
    assert cfg.hidden_size == 8
    assert lines[0].endswith("(discriminator head: fresh)")
    assert lines[1].startswith("generator <- masked LM generator")
    trained = _restored_pretrainer(corpus_dir, trained_model_dir)
    np.testing.assert_array_equal(model.discriminator.encoder_layers[0].query.kernel.numpy(),
                                  trained.generator.encoder_layers[0].query.kernel.numpy())


def test_bad_init_checkpoints_fail_clearly(corpus_dir, exported_pair, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=f"{missing} does not exist: give a pretraining "
                                              "model_dir .*TF1 checkpoint"):
        _warm_started(corpus_dir, tmp_path, init_checkpoint=str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is in none of the formats accepted"):
        _warm_started(corpus_dir, tmp_path, init_checkpoint=str(tmp_path / "empty"))
    other_vocab = tmp_path / "other_vocab.txt"
    other_vocab.write_text((corpus_dir / "vocab.txt").read_text().replace("tok7\n", "tok77\n"))
    with pytest.raises(config.ConfigError, match=r"vocab_file .*other_vocab.txt \(64 tokens, sha256 "
                                                 r"\w+\) is not the vocab of .* \(64 tokens, sha256"):
        _warm_started(corpus_dir, tmp_path, init_checkpoint=str(exported_pair),
                      vocab_file=str(other_vocab))


def test_generator_of_another_pair_is_refused_naming_the_tensor(corpus_dir, exported_pair, tmp_path):
    other = tmp_path / "other"
    tower = checkpoints.read_hf_tower(str(exported_pair / "generator"))
    table = "electra.embeddings.position_embeddings.weight"
    tower.tensors[table] = tower.tensors[table][:8]
    tower.config = dataclasses.replace(tower.config, max_position_embeddings=8)
    export.write_huggingface(tower, str(exported_pair / "generator"), str(other))
    with pytest.raises(CheckpointError, match=f"the generator's {table} is \\[8, 16\\] but the "
                                              "discriminator's .* is \\[512, 16\\]"):
        _warm_started(corpus_dir, tmp_path, init_checkpoint=str(exported_pair / "discriminator"),
                      init_generator=str(other))


def test_start_from_checkpoint_then_resume_is_exact(corpus_dir, exported_pair, tmp_path, caplog):
    runs = {"whole": tmp_path / "whole", "resumed": tmp_path / "resumed"}
    values = dict(num_train_steps=4, init_checkpoint=str(exported_pair))
    assert pretrain.run(_cfg(corpus_dir, runs["whole"], **values), deterministic=True)["step"] == 4
    assert pretrain.run(_cfg(corpus_dir, runs["resumed"], **values), deterministic=True,
                        stop_at=2)["step"] == 2
    assert "ignored" not in caplog.text
    assert pretrain.run(_cfg(corpus_dir, runs["resumed"], **values), deterministic=True)["step"] == 4
    assert f"--init_checkpoint {exported_pair} ignored" in caplog.text
    a, b = _checkpoint_values(runs["whole"]), _checkpoint_values(runs["resumed"])
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
