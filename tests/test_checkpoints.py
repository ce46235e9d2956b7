"""Tests for electra_ko.checkpoints: reading TF1 and Hugging Face checkpoints by name tables."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from electra_ko import checkpoints

VOCAB, POSITIONS, FFN = 40, 24, 48


def tf1_variables(embedding, hidden, gen_hidden, layers, gen_layers, seed=0):
    """google-research/electra variable names and shapes of a tiny pretraining checkpoint."""
    rng = np.random.default_rng(seed)
    shapes = {"electra/embeddings/word_embeddings": (VOCAB, embedding),
              "electra/embeddings/position_embeddings": (POSITIONS, embedding),
              "electra/embeddings/token_type_embeddings": (2, embedding),
              "electra/embeddings/LayerNorm/gamma": (embedding,),
              "electra/embeddings/LayerNorm/beta": (embedding,)}
    for scope, width, depth in (("electra", hidden, layers), ("generator", gen_hidden, gen_layers)):
        if width != embedding:
            shapes[f"{scope}/embeddings_project/kernel"] = (embedding, width)
            shapes[f"{scope}/embeddings_project/bias"] = (width,)
        for i in range(depth):
            prefix = f"{scope}/encoder/layer_{i}"
            for part in ("attention/self/query", "attention/self/key", "attention/self/value",
                         "attention/output/dense"):
                shapes[f"{prefix}/{part}/kernel"] = (width, width)
                shapes[f"{prefix}/{part}/bias"] = (width,)
            shapes[f"{prefix}/intermediate/dense/kernel"] = (width, FFN)
            shapes[f"{prefix}/intermediate/dense/bias"] = (FFN,)
            shapes[f"{prefix}/output/dense/kernel"] = (FFN, width)
            shapes[f"{prefix}/output/dense/bias"] = (width,)
            for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
                shapes[f"{prefix}/{norm}/gamma"] = (width,)
                shapes[f"{prefix}/{norm}/beta"] = (width,)
    shapes.update({"discriminator_predictions/dense/kernel": (hidden, hidden),
                   "discriminator_predictions/dense/bias": (hidden,),
                   "discriminator_predictions/dense_1/kernel": (hidden, 1),
                   "discriminator_predictions/dense_1/bias": (1,),
                   "generator_predictions/dense/kernel": (gen_hidden, embedding),
                   "generator_predictions/dense/bias": (embedding,),
                   "generator_predictions/LayerNorm/gamma": (embedding,),
                   "generator_predictions/LayerNorm/beta": (embedding,),
                   "generator_predictions/output_bias": (VOCAB,)})
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def write_tf1_checkpoint(directory, variables, with_optimizer_state=True):
    """A name-based TF1 checkpoint, as tf.compat.v1.train.Saver wrote it in the original."""
    graph = tf.Graph()
    with graph.as_default():
        saved = {name: tf.compat.v1.Variable(value, name=name) for name, value in variables.items()}
        if with_optimizer_state:
            for name, value in variables.items():
                for slot in ("adam_m", "adam_v"):
                    saved[f"{name}/{slot}"] = tf.compat.v1.Variable(np.zeros_like(value))
            saved["global_step"] = tf.compat.v1.Variable(np.int64(1000))
        saver = tf.compat.v1.train.Saver(var_list=saved)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(directory / "model.ckpt-1000"))


STYLES = {"small": dict(embedding=16, hidden=32, gen_hidden=8, layers=2, gen_layers=1),
          "base": dict(embedding=32, hidden=32, gen_hidden=16, layers=2, gen_layers=2)}


@pytest.fixture(scope="module")
def tf1_checkpoint(tmp_path_factory):
    """style name -> (variables, checkpoint prefix), each written once (with optimizer
    slots and global_step): building a TF1 graph and Saver takes seconds."""
    written = {}

    def get(name):
        if name not in written:
            variables = tf1_variables(**STYLES[name])
            written[name] = variables, write_tf1_checkpoint(tmp_path_factory.mktemp(name), variables)
        return written[name]
    return get


@pytest.mark.parametrize("name", STYLES)
def test_tf1_checkpoint_maps_every_variable(tf1_checkpoint, name):
    style = STYLES[name]
    variables, prefix = tf1_checkpoint(name)
    towers = checkpoints.read_tf1_checkpoint(prefix)
    disc, gen = towers["discriminator"], towers["generator"]
    np.testing.assert_array_equal(
        disc["electra.encoder.layer.1.attention.self.key.weight"],
        variables["electra/encoder/layer_1/attention/self/key/kernel"].T)
    np.testing.assert_array_equal(
        disc["discriminator_predictions.dense_prediction.bias"],
        variables["discriminator_predictions/dense_1/bias"])
    np.testing.assert_array_equal(gen["generator_lm_head.bias"],
                                  variables["generator_predictions/output_bias"])
    # the generator reuses the discriminator's embedding tables
    np.testing.assert_array_equal(gen["electra.embeddings.word_embeddings.weight"],
                                  variables["electra/embeddings/word_embeddings"])
    assert ("electra.embeddings_project.weight" in disc) == (style["hidden"] != style["embedding"])
    np.testing.assert_array_equal(gen["electra.embeddings_project.weight"],
                                  variables["generator/embeddings_project/kernel"].T)
    assert len(disc) + len(gen) - 5 == len(variables)  # 5 shared embedding tensors


@pytest.mark.parametrize("name", STYLES)
def test_sizes_are_inferred_from_shapes(tf1_checkpoint, name):
    style = STYLES[name]
    towers = checkpoints.read_tf1_checkpoint(tf1_checkpoint(name)[1])
    expected = dict(vocab_size=VOCAB, embedding_size=style["embedding"],
                    max_position_embeddings=POSITIONS, type_vocab_size=2, intermediate_size=FFN)
    assert checkpoints.infer_sizes(towers["discriminator"]) == dict(
        expected, hidden_size=style["hidden"], num_hidden_layers=style["layers"])
    assert checkpoints.infer_sizes(towers["generator"]) == dict(
        expected, hidden_size=style["gen_hidden"], num_hidden_layers=style["gen_layers"])


def test_unknown_and_missing_variables_are_listed(tmp_path):
    variables = tf1_variables(**STYLES["small"])
    del variables["electra/encoder/layer_1/output/dense/bias"]
    variables["electra/pooler/dense/kernel"] = np.zeros((32, 32), np.float32)
    path = write_tf1_checkpoint(tmp_path, variables, with_optimizer_state=False)
    with pytest.raises(checkpoints.CheckpointError) as err:
        checkpoints.read_tf1_checkpoint(path)
    message = str(err.value)
    assert "missing (1): electra/encoder/layer_1/output/dense/bias" in message
    assert "unexpected (1): electra/pooler/dense/kernel" in message


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(checkpoints.CheckpointError, match="not a readable TF checkpoint"):
        checkpoints.read_tf1_checkpoint(str(tmp_path / "nothing"))


def test_hf_dir_without_weights_names_the_expected_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra"}))
    with pytest.raises(checkpoints.CheckpointError, match="no model.safetensors"):
        checkpoints.read_hf_dir(tmp_path)


def test_hf_dir_of_another_model_type_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(checkpoints.CheckpointError, match="model_type is 'bert'"):
        checkpoints.read_hf_dir(tmp_path)


def test_bare_electra_model_names_get_the_encoder_prefix(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "electra"}))
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    save_file({"embeddings.word_embeddings.weight": weight}, str(tmp_path / "model.safetensors"))
    _, tensors = checkpoints.read_hf_dir(tmp_path)
    assert list(tensors) == ["electra.embeddings.word_embeddings.weight"]
    assert checkpoints.hf_tower_kind(tensors) == "encoder"


def write_vocab(directory, size):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"가{i}" for i in range(size - 5)]
    directory.mkdir()
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return directory


def export_flags(**values):
    from absl import flags

    from electra_ko import export

    fv = flags.FlagValues()
    export.define_flags(fv)
    fv(["export"])
    for key, value in values.items():
        setattr(fv, key, value)
    return fv


def test_tf1_checkpoint_converts_to_huggingface_in_one_command(tmp_path, tf1_checkpoint):
    from electra_ko import export

    variables, prefix = tf1_checkpoint("small")
    vocab_dir = write_vocab(tmp_path / "vocab", VOCAB)
    written = export.run(export_flags(init_checkpoint=prefix, vocab=str(vocab_dir),
                                      output_dir=str(tmp_path / "hf"),
                                      set=["num_attention_heads=4"]))
    assert written == [str(tmp_path / "hf" / "discriminator"), str(tmp_path / "hf" / "generator")]
    disc = checkpoints.read_hf_tower(written[0])
    assert (disc.kind, disc.config.hidden_size, disc.config.num_attention_heads) == (
        "discriminator", 32, 4)
    np.testing.assert_array_equal(disc.tensors["electra.encoder.layer.0.output.dense.weight"],
                                  variables["electra/encoder/layer_0/output/dense/kernel"].T)
    gen = checkpoints.read_hf_tower(written[1])
    assert (gen.kind, gen.config.hidden_size, gen.config.num_attention_heads) == ("generator", 8, 1)


def test_tf1_import_without_head_count_says_how_to_give_it(tmp_path, tf1_checkpoint):
    from electra_ko import export

    prefix = tf1_checkpoint("base")[1]
    with pytest.raises(checkpoints.CheckpointError, match="--set num_attention_heads=N"):
        export.run(export_flags(init_checkpoint=prefix, output_dir=str(tmp_path / "out")))


def test_locate_tells_each_format_once(tmp_path, tf1_checkpoint):
    from electra_ko import export

    prefix = tf1_checkpoint("small")[1]
    for path in (prefix, os.path.dirname(prefix)):  # the prefix, or its folder
        location = checkpoints.locate(path)
        assert (location.format, location.path) == (checkpoints.TF1, prefix)
    assert location.identity() == prefix + ".index" and location.vocab() is None
    written = export.run(export_flags(init_checkpoint=prefix, output_dir=str(tmp_path / "hf"),
                                      vocab=str(write_vocab(tmp_path / "vocab", VOCAB)),
                                      set=["num_attention_heads=4"]))
    pair = checkpoints.locate(str(tmp_path / "hf"))
    assert (pair.format, pair.folders, pair.vocab()) == (checkpoints.FOLDERS, tuple(written),
                                                         written[0])
    one = checkpoints.locate(written[1])
    assert (one.format, one.vocab()) == (checkpoints.HUGGINGFACE, written[1])
    assert one.identity() == os.path.join(written[1], checkpoints.HF_SAFETENSORS)
    assert [t.kind for t in checkpoints.open_checkpoint(str(tmp_path / "hf")).towers] == [
        "discriminator", "generator"]
    (tmp_path / "empty").mkdir()
    assert checkpoints.locate(str(tmp_path / "empty")) is None
    with pytest.raises(checkpoints.CheckpointError, match="empty: neither a Hugging Face "
                                                          "directory .* nor a TF checkpoint"):
        checkpoints.open_checkpoint(str(tmp_path / "empty"))
