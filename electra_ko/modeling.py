"""ELECTRA in Keras 3: a BERT-style encoder, a small generator and a discriminator.

Architecture (as google-research/electra and Hugging Face's `ElectraModel`):

    Embeddings      word + position + token type, LayerNorm, dropout (shared by both
                    encoders, LayerNorm included, as in the original)
    ElectraEncoder  [embeddings_project] + N post-LayerNorm Transformer layers
                    (separate query/key/value projections, exact erf GELU in the FFN)
    MaskedLMHead    dense(embedding_size) + GELU + LayerNorm, logits = h @ word_embeddings^T + bias
    DiscriminatorHead  dense(hidden) + GELU + dense(1): one replaced-token logit per token

`ElectraPretrainer` owns the shared embeddings, the generator and discriminator encoders
and both heads. With `electra_objective=False` it is a plain masked LM: the
discriminator-sized encoder (scope "electra") with the MLM head, as the original builds it.

Embedding sharing between the towers (`embedding_sharing`):

    tied    one embedding layer, trained by both losses (google-research/electra)
    gdes    DeBERTaV3's gradient-disentangled sharing: the discriminator reads each table
            (word, position, token type) as stop_gradient(shared) + its own delta, zero at
            the start, so the generator alone trains the shared tables and the
            discriminator's loss trains only the deltas (and what lies above the tables;
            the LayerNorm after them stays shared). Exports fold the deltas in: the
            discriminator is a standard ElectraForPreTraining.
    untied  the generator has an embedding layer of its own

Dropout is stateless: every call that trains takes a `seed` (int tensor of shape [2]),
so a training step is a pure function of (weights, batch, seed); `electra_ko.randomness`
draws the bits (the same with and without XLA, and per example across replicas). Without
a seed, training draws one.

Weight names. Every layer and model lists its weights as `tf1_weights()`: `(name,
variable)` pairs named as in google-research/electra TF1 checkpoints, each weight once:

    electra/embeddings/{word_embeddings, position_embeddings, token_type_embeddings}
    electra/embeddings/LayerNorm/{gamma, beta}
    generator/embeddings/...                                   (only if untied)
    {electra|generator}/embeddings_project/{kernel, bias}       (only if projected)
    {electra|generator}/encoder/layer_<i>/attention/self/{query,key,value}/{kernel,bias}
    {electra|generator}/encoder/layer_<i>/attention/output/dense/{kernel,bias}
    {electra|generator}/encoder/layer_<i>/attention/output/LayerNorm/{gamma,beta}
    {electra|generator}/encoder/layer_<i>/intermediate/dense/{kernel,bias}
    {electra|generator}/encoder/layer_<i>/output/dense/{kernel,bias}
    {electra|generator}/encoder/layer_<i>/output/LayerNorm/{gamma,beta}
    generator_predictions/dense/{kernel,bias}, generator_predictions/LayerNorm/{gamma,beta}
    generator_predictions/output_bias
    discriminator_predictions/dense/{kernel,bias}, discriminator_predictions/dense_1/{kernel,bias}
    electra/embeddings/{word,position,token_type}_embeddings_delta   (only under gdes)

Every kernel keeps the reference shape, so loading a TF1 checkpoint is a plain copy.
`electra_ko.checkpoints` maps these names to Hugging Face `transformers` names (and
transposes kernels for torch); nothing here knows those.
"""
import math
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from electra_ko import architecture
from electra_ko.config import EMBEDDING_SHARING
from electra_ko.randomness import dropout, resolve_seed, split_seed

ATTENTION_MASK_BIAS = -10000.0  # added to scores of padding keys; fits float16


# ----------------------------------------------------------------------------- helpers

def initializer(config: architecture.EncoderConfig):
    return keras.initializers.TruncatedNormal(stddev=config.initializer_range)


def sinusoidal_initializer(stddev: float):
    """The sine/cosine position table of "Attention Is All You Need" (sines in the first
    half of the columns, cosines in the second), times `stddev * sqrt(2)`: entries as large
    as the normal initialiser's (RMS `stddev` in a column that runs through whole periods).

    Only the starting point of the learned position embeddings changes: rows whose dot
    products depend on the distance between positions let a small model find its
    neighbours sooner, where random rows must each be learned apart (on NSMC reviews the
    tiny masked LM leaves the unigram plateau ~1000 steps earlier). Exports are unchanged.
    """
    def initialize(shape, dtype=None):
        positions, width = shape
        half = (width + 1) // 2
        angles = np.arange(positions)[:, None] / 10000.0 ** (2 * np.arange(half)[None, :] / width)
        table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)[:, :width]
        return tf.constant(table * stddev * np.sqrt(2.0), dtype=dtype or "float32")
    return initialize


# The kernel initializer of TF1's `tf.layers.dense` when none is given. google-research/electra
# leaves it so for `embeddings_project` and the discriminator's output layer; for tiny
# widths it starts them ~7x larger than the truncated normal the other layers take.
TF1_DENSE_DEFAULT_INIT = "glorot_uniform"


def dense(units: int, config: architecture.EncoderConfig, name: str, activation=None,
          kernel_initializer=None) -> keras.layers.Dense:
    return keras.layers.Dense(units, activation=activation, name=name,
                              kernel_initializer=kernel_initializer or initializer(config))


def layer_norm(config: architecture.EncoderConfig,
               name: str = "LayerNorm") -> keras.layers.LayerNormalization:
    return keras.layers.LayerNormalization(epsilon=config.layer_norm_eps, name=name)


def dense_weights(layer: keras.layers.Dense, name: str):
    return [(f"{name}/kernel", layer.kernel), (f"{name}/bias", layer.bias)]


def layer_norm_weights(layer: keras.layers.LayerNormalization, name: str):
    return [(f"{name}/gamma", layer.gamma), (f"{name}/beta", layer.beta)]


# ----------------------------------------------------------------------------- layers

class ConfigLayer(keras.layers.Layer):
    """A layer built from one `architecture.EncoderConfig`; serialises it in `get_config`."""

    def __init__(self, config: architecture.EncoderConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def get_config(self):
        return {**super().get_config(), "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(architecture.EncoderConfig(**config.pop("config")), **config)


class Embeddings(ConfigLayer):
    """Word + position + token-type embeddings, LayerNorm, dropout -> [B, L, embedding_size]."""

    def __init__(self, config: architecture.EncoderConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.layer_norm = layer_norm(config)

    def build(self, input_shape=None):
        c = self.config
        self.word_embeddings = self.add_weight(
            name="word_embeddings", shape=(c.vocab_size, c.embedding_size), initializer=initializer(c))
        self.position_embeddings = self.add_weight(
            name="position_embeddings", shape=(c.max_position_embeddings, c.embedding_size),
            initializer=(sinusoidal_initializer(c.initializer_range)
                         if c.position_embedding_init == "sinusoidal" else initializer(c)))
        self.token_type_embeddings = self.add_weight(
            name="token_type_embeddings", shape=(c.type_vocab_size, c.embedding_size),
            initializer=initializer(c))
        self.layer_norm.build((None, None, c.embedding_size))

    def tables(self):
        """[word, position, token type] tables, in `TABLES` order."""
        return [self.word_embeddings, self.position_embeddings, self.token_type_embeddings]

    def call(self, input_ids, segment_ids, training=False, seed=None, tables=None):
        """`tables` replaces `self.tables()` (the gdes discriminator's shared + delta)."""
        seq_length = input_ids.shape[1]
        if seq_length > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {seq_length} exceeds max_position_embeddings "
                             f"{self.config.max_position_embeddings}")
        dtype = self.compute_dtype
        word, position, token_type = (tf.cast(t, dtype) for t in (tables or self.tables()))
        x = tf.gather(word, input_ids)
        x += position[tf.newaxis, :seq_length]
        x += tf.gather(token_type, segment_ids)
        return dropout(self.layer_norm(x), self.config.hidden_dropout_prob, seed, training)

    def tf1_weights(self, prefix: str):
        return ([(f"{prefix}/{name}", table) for name, table in zip(TABLES, self.tables())]
                + layer_norm_weights(self.layer_norm, f"{prefix}/LayerNorm"))


TABLES = ("word_embeddings", "position_embeddings", "token_type_embeddings")


class EmbeddingDeltas(ConfigLayer):
    """gdes: the discriminator's own offsets to the shared tables, zero at the start."""

    def build(self, input_shape=None):
        c = self.config
        shapes = ((c.vocab_size, c.embedding_size), (c.max_position_embeddings, c.embedding_size),
                  (c.type_vocab_size, c.embedding_size))
        self.deltas = [self.add_weight(name=f"{name}_delta", shape=shape, initializer="zeros")
                       for name, shape in zip(TABLES, shapes)]

    def tables(self, shared: Embeddings):
        """The discriminator's tables: no gradient flows from them into `shared`'s."""
        return [tf.stop_gradient(table) + delta for table, delta in zip(shared.tables(), self.deltas)]

    def tf1_weights(self, prefix: str):
        """Each delta under the name of the table it offsets."""
        return [(f"{prefix}/{name}", delta) for name, delta in zip(TABLES, self.deltas)]


class TransformerLayer(ConfigLayer):
    """Post-LayerNorm block: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, config: architecture.EncoderConfig, **kwargs):
        super().__init__(config, **kwargs)
        h = config.hidden_size
        self.query = dense(h, config, "query")
        self.key = dense(h, config, "key")
        self.value = dense(h, config, "value")
        self.attention_output = dense(h, config, "attention_output")
        self.attention_layer_norm = layer_norm(config, "attention_LayerNorm")
        self.intermediate = dense(config.intermediate_size, config, "intermediate", "gelu")
        self.output_dense = dense(h, config, "output")
        self.output_layer_norm = layer_norm(config, "output_LayerNorm")

    def build(self, input_shape=None):
        h = self.config.hidden_size
        for layer in (self.query, self.key, self.value, self.attention_output, self.intermediate):
            layer.build((None, None, h))
        self.output_dense.build((None, None, self.config.intermediate_size))
        self.attention_layer_norm.build((None, None, h))
        self.output_layer_norm.build((None, None, h))

    def split_heads(self, x):
        heads = self.config.num_attention_heads
        return tf.reshape(x, [-1, x.shape[1], heads, self.config.hidden_size // heads])

    def attention(self, x, attention_bias, training, seed):
        q, k, v = (self.split_heads(layer(x)) for layer in (self.query, self.key, self.value))
        scale = 1.0 / math.sqrt(self.config.hidden_size // self.config.num_attention_heads)
        scores = tf.einsum("bqhd,bkhd->bhqk", q * tf.cast(scale, q.dtype), k) + attention_bias
        probs = dropout(tf.nn.softmax(scores, axis=-1),
                        self.config.attention_probs_dropout_prob, seed, training)
        context = tf.einsum("bhqk,bkhd->bqhd", probs, v)
        return tf.reshape(context, tf.shape(x))

    def call(self, x, attention_bias, training=False, seed=None):
        seeds = split_seed(seed, 3) if training else [None] * 3
        rate = self.config.hidden_dropout_prob
        attended = self.attention(x, attention_bias, training, seeds[0])
        x = self.attention_layer_norm(
            x + dropout(self.attention_output(attended), rate, seeds[1], training))
        ffn = self.output_dense(self.intermediate(x))
        return self.output_layer_norm(x + dropout(ffn, rate, seeds[2], training))

    def tf1_weights(self, prefix: str):
        return (dense_weights(self.query, f"{prefix}/attention/self/query")
                + dense_weights(self.key, f"{prefix}/attention/self/key")
                + dense_weights(self.value, f"{prefix}/attention/self/value")
                + dense_weights(self.attention_output, f"{prefix}/attention/output/dense")
                + layer_norm_weights(self.attention_layer_norm, f"{prefix}/attention/output/LayerNorm")
                + dense_weights(self.intermediate, f"{prefix}/intermediate/dense")
                + dense_weights(self.output_dense, f"{prefix}/output/dense")
                + layer_norm_weights(self.output_layer_norm, f"{prefix}/output/LayerNorm"))


class ElectraEncoder(ConfigLayer):
    """Embeddings -> [embeddings_project] -> Transformer layers (Hugging Face `ElectraModel`).

    call(input_ids, input_mask, segment_ids) returns {"sequence_output": [B, L, hidden],
    "cls_output": [B, hidden]} (the [CLS] vector, no pooler, as ELECTRA). `embeddings`
    lets two encoders share one embedding layer; a deserialised encoder owns its own.
    With `embedding_deltas` (gdes) the encoder reads the shared tables through them.
    """

    def __init__(self, config: architecture.EncoderConfig, embeddings: Optional[Embeddings] = None,
                 embedding_deltas: Optional[EmbeddingDeltas] = None, **kwargs):
        super().__init__(config, **kwargs)
        self.embeddings = embeddings or Embeddings(config, name="embeddings")
        self.embedding_deltas = embedding_deltas
        if self.embeddings.config.embedding_size != config.embedding_size:
            raise ValueError(f"shared embeddings have width {self.embeddings.config.embedding_size}, "
                             f"config says embedding_size {config.embedding_size}")
        self.embeddings_project = (dense(config.hidden_size, config, "embeddings_project",
                                         kernel_initializer=TF1_DENSE_DEFAULT_INIT)
                                   if config.embedding_size != config.hidden_size else None)
        self.encoder_layers = [TransformerLayer(config, name=f"layer_{i}")
                               for i in range(config.num_hidden_layers)]
        # tf.train.Checkpoint does not look inside Keras' tracked lists: name each layer as
        # an attribute too, or a model-only checkpoint would silently skip the Transformer.
        for layer in self.encoder_layers:
            setattr(self, layer.name, layer)

    def build(self, input_shape=None):
        for part in (self.embeddings, self.embedding_deltas):
            if part is not None and not part.built:
                part.build()
        if self.embeddings_project is not None:
            self.embeddings_project.build((None, None, self.config.embedding_size))
        for layer in self.encoder_layers:
            layer.build()

    def call(self, input_ids, input_mask=None, segment_ids=None, training=False, seed=None):
        input_mask = tf.ones_like(input_ids) if input_mask is None else input_mask
        segment_ids = tf.zeros_like(input_ids) if segment_ids is None else segment_ids
        seed = resolve_seed(seed, training)
        seeds = split_seed(seed, 1 + len(self.encoder_layers)) if training else [None] * (
            1 + len(self.encoder_layers))
        tables = (None if self.embedding_deltas is None
                  else self.embedding_deltas.tables(self.embeddings))
        x = self.embeddings(input_ids, segment_ids, training=training, seed=seeds[0],
                            tables=tables)
        if self.embeddings_project is not None:
            x = self.embeddings_project(x)
        bias = (1.0 - tf.cast(input_mask, x.dtype)[:, tf.newaxis, tf.newaxis, :]) * tf.cast(
            ATTENTION_MASK_BIAS, x.dtype)
        for layer, layer_seed in zip(self.encoder_layers, seeds[1:]):
            x = layer(x, bias, training=training, seed=layer_seed)
        return {"sequence_output": x, "cls_output": x[:, 0]}

    def tf1_weights(self, scope: str, embeddings_scope: Optional[str] = "electra"):
        """TF1 names under `scope` ("electra" or "generator"); the embeddings under
        `embeddings_scope` (None: left out). Shared embeddings are named "electra/embeddings",
        as the original stores them once; untied generator ones "generator/embeddings"."""
        weights = (self.embeddings.tf1_weights(f"{embeddings_scope}/embeddings")
                   if embeddings_scope else [])
        if self.embeddings_project is not None:
            weights += dense_weights(self.embeddings_project, f"{scope}/embeddings_project")
        for i, layer in enumerate(self.encoder_layers):
            weights += layer.tf1_weights(f"{scope}/encoder/layer_{i}")
        return weights


class MaskedLMHead(ConfigLayer):
    """dense(embedding_size) + GELU + LayerNorm, then logits tied to the word embeddings."""

    def __init__(self, config: architecture.EncoderConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.dense = dense(config.embedding_size, config, "dense", "gelu")
        self.layer_norm = layer_norm(config)

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.hidden_size))
        self.layer_norm.build((None, None, self.config.embedding_size))
        self.output_bias = self.add_weight(name="output_bias", shape=(self.config.vocab_size,),
                                           initializer="zeros")

    def call(self, hidden, word_embeddings):
        """hidden [B, N, hidden] -> float32 logits [B, N, vocab].

        One [B * N, embedding] x [embedding, vocab] matmul: multiplied as a batch of B
        against the shared table, the table's gradient is B partial products summed."""
        h = self.layer_norm(self.dense(hidden))
        rows = tf.reshape(h, [-1, self.config.embedding_size])
        logits = tf.matmul(rows, tf.cast(word_embeddings, h.dtype), transpose_b=True)
        logits = tf.reshape(logits, tf.concat([tf.shape(h)[:-1], [self.config.vocab_size]], 0))
        return tf.cast(logits, tf.float32) + tf.cast(self.output_bias, tf.float32)

    def tf1_weights(self, prefix: str = "generator_predictions"):
        return (dense_weights(self.dense, f"{prefix}/dense")
                + layer_norm_weights(self.layer_norm, f"{prefix}/LayerNorm")
                + [(f"{prefix}/output_bias", self.output_bias)])


class DiscriminatorHead(ConfigLayer):
    """dense(hidden) + GELU + dense(1) -> float32 logit per token, [B, L]."""

    def __init__(self, config: architecture.EncoderConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.dense = dense(config.hidden_size, config, "dense", "gelu")
        self.dense_prediction = dense(1, config, "dense_prediction",
                                      kernel_initializer=TF1_DENSE_DEFAULT_INIT)

    def build(self, input_shape=None):
        self.dense.build((None, None, self.config.hidden_size))
        self.dense_prediction.build((None, None, self.config.hidden_size))

    def call(self, sequence_output):
        return tf.cast(tf.squeeze(self.dense_prediction(self.dense(sequence_output)), -1), tf.float32)

    def tf1_weights(self, prefix: str = "discriminator_predictions"):
        return (dense_weights(self.dense, f"{prefix}/dense")
                + dense_weights(self.dense_prediction, f"{prefix}/dense_1"))


# ----------------------------------------------------------------------------- model

class ElectraPretrainer(keras.Model):
    """Generator + discriminator with shared embeddings; weights exist after construction.

    With `electra_objective=False` there is no separate generator: the masked LM is the
    discriminator-sized encoder (`self.discriminator`) with the MLM head.
    `embedding_sharing` ("tied", "gdes", "untied"; see the module docstring) applies to the
    ELECTRA objective only.
    """

    def __init__(self, discriminator_config: architecture.EncoderConfig,
                 generator_config: Optional[architecture.EncoderConfig] = None,
                 electra_objective: bool = True, embedding_sharing: str = "tied", **kwargs):
        super().__init__(**kwargs)
        if electra_objective and generator_config is None:
            raise ValueError("the ELECTRA objective needs a generator_config")
        if embedding_sharing not in EMBEDDING_SHARING:
            raise ValueError(f"embedding_sharing must be one of {EMBEDDING_SHARING}, "
                             f"got {embedding_sharing!r}")
        self.discriminator_config = discriminator_config
        self.generator_config = generator_config if electra_objective else None
        self.electra_objective = electra_objective
        self.embedding_sharing = embedding_sharing if electra_objective else "tied"
        self.embeddings = Embeddings(discriminator_config, name="embeddings")
        self.embedding_deltas = (EmbeddingDeltas(discriminator_config, name="embedding_deltas")
                                 if self.embedding_sharing == "gdes" else None)
        self.discriminator = ElectraEncoder(discriminator_config, self.embeddings,
                                            self.embedding_deltas, name="electra")
        if electra_objective:
            if (generator_config.vocab_size, generator_config.embedding_size) != (
                    discriminator_config.vocab_size, discriminator_config.embedding_size):
                raise ValueError("generator and discriminator must share vocab_size and "
                                 "embedding_size (they share the embedding layers)")
            generator_embeddings = (Embeddings(generator_config, name="generator_embeddings")
                                    if self.embedding_sharing == "untied" else self.embeddings)
            self.generator = ElectraEncoder(generator_config, generator_embeddings,
                                            name="generator")
            self.discriminator_predictions = DiscriminatorHead(
                discriminator_config, name="discriminator_predictions")
        mlm_config = generator_config if electra_objective else discriminator_config
        self.generator_predictions = MaskedLMHead(mlm_config, name="generator_predictions")
        self.build()

    @classmethod
    def from_project_config(cls, cfg) -> "ElectraPretrainer":
        disc = architecture.EncoderConfig.from_config(cfg)
        gen = disc.generator(cfg.generator_hidden_size, cfg.generator_layers)
        return cls(disc, gen, electra_objective=cfg.electra_objective,
                   embedding_sharing=cfg.embedding_sharing, name="electra_pretrainer")

    def build(self, input_shape=None):
        parts = [self.embeddings, self.discriminator, self.generator_predictions]
        if self.electra_objective:
            parts += [self.generator, self.discriminator_predictions]
        for part in parts:
            part.build()

    @property
    def mlm_encoder(self) -> ElectraEncoder:
        return self.generator if self.electra_objective else self.discriminator

    def generator_logits(self, input_ids, input_mask, segment_ids, masked_lm_positions,
                         training=False, seed=None):
        """float32 MLM logits at `masked_lm_positions`: [B, N, vocab]."""
        hidden = self.mlm_encoder(input_ids, input_mask, segment_ids, training=training,
                                  seed=seed)["sequence_output"]
        hidden = tf.gather(hidden, masked_lm_positions, batch_dims=1)
        return self.generator_predictions(hidden, self.mlm_encoder.embeddings.word_embeddings)

    def discriminator_logits(self, input_ids, input_mask, segment_ids, training=False, seed=None):
        """float32 replaced-token logits: [B, L]."""
        hidden = self.discriminator(input_ids, input_mask, segment_ids, training=training,
                                    seed=seed)["sequence_output"]
        return self.discriminator_predictions(hidden)

    def call(self, features, training=False):
        """Inference on unmasked features: MLM logits at `masked_lm_positions` (default:
        every position) and, with the ELECTRA objective, discriminator logits."""
        input_ids = features["input_ids"]
        positions = features.get("masked_lm_positions")
        if positions is None:
            positions = tf.broadcast_to(tf.range(input_ids.shape[1]), tf.shape(input_ids))
        args = (input_ids, features["input_mask"], features["segment_ids"])
        outputs = {"mlm_logits": self.generator_logits(*args, positions, training=training)}
        if self.electra_objective:
            outputs["disc_logits"] = self.discriminator_logits(*args, training=training)
        return outputs

    def get_config(self):
        return {"discriminator_config": self.discriminator_config.to_dict(),
                "generator_config": self.generator_config and self.generator_config.to_dict(),
                "electra_objective": self.electra_objective,
                "embedding_sharing": self.embedding_sharing, "name": self.name}

    @classmethod
    def from_config(cls, config):
        gen = config.get("generator_config")
        return cls(architecture.EncoderConfig(**config["discriminator_config"]),
                   gen and architecture.EncoderConfig(**gen), config["electra_objective"],
                   config.get("embedding_sharing", "tied"), name=config.get("name"))

    def tf1_weights(self, part: Optional[str] = None):
        """[(TF1 name, variable)]: every weight once (part None), or the weights of one
        tower as a model of its own (`part` "discriminator" or "generator": the generator's
        embeddings are then the shared ones, and a gdes discriminator's tables the shared
        variables without their deltas)."""
        if part is None:
            return self._all_tf1_weights()
        if part not in ("discriminator", "generator"):
            raise ValueError(f"part must be 'discriminator' or 'generator', got {part!r}")
        if part == "discriminator":
            if not self.electra_objective:
                raise ValueError("a masked-LM model (electra_objective=False) has no discriminator head")
            return (self.discriminator.tf1_weights("electra")
                    + self.discriminator_predictions.tf1_weights())
        scope = "generator" if self.electra_objective else "electra"
        return self.mlm_encoder.tf1_weights(scope) + self.generator_predictions.tf1_weights()

    def _all_tf1_weights(self):
        weights = self.discriminator.tf1_weights("electra")
        if self.electra_objective:
            untied = self.embedding_sharing == "untied"
            weights += self.generator.tf1_weights("generator", "generator" if untied else None)
            weights += self.discriminator_predictions.tf1_weights()
        if self.embedding_deltas is not None:
            weights += [(name + "_delta", delta) for name, delta
                        in self.embedding_deltas.tf1_weights("electra/embeddings")]
        return weights + self.generator_predictions.tf1_weights()


# ----------------------------------------------------------------------------- towers

class DiscriminatorModel(keras.Model):
    """One discriminator alone (`ElectraForPreTraining`): encoder + replaced-token head ->
    logits [B, L]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = config
        self.encoder = ElectraEncoder(config, name="electra")
        self.head = DiscriminatorHead(config, name="discriminator_predictions")
        self.encoder.build()
        self.head.build()

    def call(self, features):
        hidden = self.encoder(features["input_ids"], features["input_mask"],
                              features["segment_ids"])["sequence_output"]
        return self.head(hidden)

    def tf1_weights(self):
        return self.encoder.tf1_weights("electra") + self.head.tf1_weights()


class GeneratorModel(keras.Model):
    """One masked LM alone (`ElectraForMaskedLM`): encoder + MLM head tied to the word
    embeddings -> [B, L, vocab]."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = config
        self.encoder = ElectraEncoder(config, name="generator")
        self.head = MaskedLMHead(config, name="generator_predictions")
        self.encoder.build()
        self.head.build()

    def call(self, features):
        hidden = self.encoder(features["input_ids"], features["input_mask"],
                              features["segment_ids"])["sequence_output"]
        return self.head(hidden, self.encoder.embeddings.word_embeddings)

    def tf1_weights(self):
        return self.encoder.tf1_weights("generator") + self.head.tf1_weights()


def count_params(variables) -> int:
    return sum(int(tf.size(v)) for v in variables)
