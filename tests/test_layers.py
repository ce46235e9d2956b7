"""One harness for every custom Keras layer of the model: its `get_config` round trip, eager
against `tf.function`, and mixed_bfloat16 (the TPU policy) against float32.

A layer joins by one `LayerCase`: how to make it from an EncoderConfig and how to call it.
"""
import dataclasses
from typing import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_ko import architecture, modeling

CONFIG = architecture.EncoderConfig(vocab_size=40, hidden_size=16, embedding_size=8,
                                num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                max_position_embeddings=24)
BATCH, LENGTH = 3, 12


def _ids():
    return tf.constant(np.random.RandomState(0).randint(5, CONFIG.vocab_size, (BATCH, LENGTH)))


def _mask():
    return tf.constant([[1] * LENGTH, [1] * 7 + [0] * 5, [1] * 3 + [0] * 9])


def _hidden(width):
    return tf.constant(np.random.RandomState(1).normal(size=(BATCH, LENGTH, width)), tf.float32)


@dataclasses.dataclass(frozen=True)
class LayerCase:
    make: Callable  # EncoderConfig -> layer (built)
    call: Callable  # layer -> output tensor, computed in the layer's compute dtype

    def __str__(self):
        return self.make.__name__


def built(layer):
    layer.build()
    return layer


def embeddings(config):
    return built(modeling.Embeddings(config, name="embeddings"))


def embedding_deltas(config):
    deltas = built(modeling.EmbeddingDeltas(config, name="deltas"))
    for delta in deltas.deltas:  # zero at the start; make the sum visible
        delta.assign(tf.fill(delta.shape, 0.01))
    return deltas


def transformer_layer(config):
    return built(modeling.TransformerLayer(config, name="layer_0"))


def encoder(config):
    return built(modeling.ElectraEncoder(config, name="electra"))


def masked_lm_head(config):
    head = modeling.MaskedLMHead(config, name="generator_predictions")
    head.build()
    return head


def discriminator_head(config):
    return built(modeling.DiscriminatorHead(config, name="discriminator_predictions"))


SHARED = []  # the embeddings EmbeddingDeltas offsets (float32 variables under any policy)


def _shared_tables(layer):
    if not SHARED:
        SHARED.append(embeddings(layer.config))
    return SHARED[0]


def _attention_bias():
    return (1.0 - tf.cast(_mask(), tf.float32)[:, None, None, :]) * -10000.0


CASES = [
    LayerCase(embeddings, lambda layer: layer(_ids(), tf.zeros_like(_ids()))),
    LayerCase(embedding_deltas, lambda layer: tf.gather(layer.tables(_shared_tables(layer))[0],
                                                        _ids())),
    LayerCase(transformer_layer, lambda layer: layer(
        tf.cast(_hidden(CONFIG.hidden_size), layer.compute_dtype),
        tf.cast(_attention_bias(), layer.compute_dtype))),
    LayerCase(encoder, lambda layer: layer(_ids(), _mask())["sequence_output"]),
    LayerCase(masked_lm_head, lambda layer: layer(
        tf.cast(_hidden(CONFIG.hidden_size), layer.compute_dtype),
        tf.constant(np.random.RandomState(2).normal(
            0, 0.05, (CONFIG.vocab_size, CONFIG.embedding_size)), tf.float32))),
    LayerCase(discriminator_head, lambda layer: layer(
        tf.cast(_hidden(CONFIG.hidden_size), layer.compute_dtype))),
]


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def copy_weights(source, target):
    assert [w.path for w in source.weights] == [w.path for w in target.weights]
    for a, b in zip(source.weights, target.weights):
        b.assign(a)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_get_config_round_trip_gives_the_same_layer(case):
    layer = case.make(CONFIG)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.config == CONFIG
    clone.build()
    copy_weights(layer, clone)
    np.testing.assert_array_equal(case.call(clone).numpy(), case.call(layer).numpy())


@pytest.mark.parametrize("case", CASES, ids=str)
def test_tf_function_computes_what_eager_does(case):
    layer = case.make(CONFIG)
    eager = case.call(layer).numpy()
    traced = tf.function(lambda: case.call(layer))().numpy()
    assert np.isfinite(eager).all()
    np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_mixed_bfloat16_keeps_float32_weights_and_follows_float32(case, float32_policy):
    reference = case.make(CONFIG)
    expected = case.call(reference).numpy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    layer = case.make(CONFIG)
    copy_weights(reference, layer)
    assert {w.dtype for w in layer.weights} == {"float32"}
    output = case.call(layer)
    got = tf.cast(output, tf.float32).numpy()
    assert np.isfinite(got).all()
    # bfloat16 keeps 8 bits of mantissa: about 2 decimal digits
    np.testing.assert_allclose(got, expected, rtol=0.05, atol=0.05 * np.abs(expected).max())
