"""ELECTRA model: derived sizes, shared/tied weights, names, parity with Hugging Face."""
import numpy as np
import pytest
import tensorflow as tf
import keras

from electra_ko import architecture, checkpoints, config, modeling

TINY = architecture.EncoderConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=4, intermediate_size=64, embedding_size=16,
                              max_position_embeddings=40)
IDS = np.array([[2, 7, 8, 9, 3, 0, 0], [2, 11, 12, 13, 14, 15, 3]], np.int32)
MASK = (IDS > 0).astype(np.int32)
SEGMENTS = np.array([[0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1]], np.int32)


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    return modeling.ElectraPretrainer(TINY, TINY.generator(0.5))


def size_config(size, **overrides):
    return config.load_config(config.PRETRAIN, model_size=size, vocab_size=30522, **overrides)


@pytest.mark.parametrize("size, hidden, layers, heads, ffn", [
    ("small", 64, 12, 1, 256), ("base", 256, 12, 4, 1024), ("large", 256, 24, 4, 1024)])
def test_generator_sizes_match_google_research_electra(size, hidden, layers, heads, ffn):
    cfg = size_config(size)
    generator = architecture.EncoderConfig.generator_from_config(cfg)
    assert (generator.hidden_size, generator.num_hidden_layers, generator.num_attention_heads,
            generator.intermediate_size) == (hidden, layers, heads, ffn)
    assert generator.embedding_size == cfg.embedding_size  # shares the discriminator's tables
    assert cfg.generator_sizes() == dict(hidden_size=hidden, num_hidden_layers=layers,
                                         num_attention_heads=heads, intermediate_size=ffn)


def test_generator_rounds_fractions_like_the_original():
    # 768 * 0.333 = 255.7 -> 256 (int() alone would give 255); 12 * 0.4 = 4.8 -> 5 layers
    base = architecture.EncoderConfig(**{**TINY.to_dict(), "hidden_size": 768, "num_hidden_layers": 12,
                                     "num_attention_heads": 12})
    generator = base.generator(0.333, 0.4)
    assert (generator.hidden_size, generator.num_hidden_layers) == (256, 5)


def test_electra_small_parameter_count():
    small = architecture.EncoderConfig.from_config(size_config("small"))
    encoder, head = modeling.ElectraEncoder(small), modeling.DiscriminatorHead(small)
    encoder.build(), head.build()
    # the ELECTRA paper's "14M" small discriminator (transformers' ElectraForPreTraining agrees)
    assert modeling.count_params(encoder.weights) == 13_483_008
    assert modeling.count_params(encoder.weights + head.weights) == 13_549_057


def test_generator_projects_only_when_sizes_differ():
    equal = architecture.EncoderConfig(**{**TINY.to_dict(), "embedding_size": 32})
    model = modeling.ElectraPretrainer(equal, equal.generator(0.5))
    assert model.discriminator.embeddings_project is None
    assert model.generator.embeddings_project is not None


def test_embeddings_are_shared_variables(tiny_model):
    assert tiny_model.generator.embeddings is tiny_model.discriminator.embeddings
    ids = {id(v) for v in tiny_model.generator.weights} & {id(v) for v in tiny_model.discriminator.weights}
    assert ids == {id(v) for v in tiny_model.embeddings.weights}
    assert len(ids) == 5  # word, position, token type, LayerNorm gamma and beta


def test_every_weight_has_one_tf1_name(tiny_model):
    named = tiny_model.tf1_weights()
    assert len({name for name, _ in named}) == len(named)
    assert sorted(id(v) for _, v in named) == sorted(id(v) for v in tiny_model.trainable_variables)
    names = dict(named)
    assert names["electra/embeddings/word_embeddings"].shape == (50, 16)
    assert names["generator/encoder/layer_1/attention/self/query/kernel"].shape == (16, 16)
    assert "generator/embeddings_project/kernel" not in names  # generator hidden == 16
    assert names["electra/encoder/layer_0/intermediate/dense/kernel"].shape == (32, 64)
    assert names["discriminator_predictions/dense_1/kernel"].shape == (32, 1)
    assert names["generator_predictions/output_bias"].shape == (50,)
    assert not any(n.startswith("generator/embeddings/") for n in names)


@pytest.mark.parametrize("tf1_name, hf_name, transposed", [
    ("electra/embeddings/word_embeddings", "electra.embeddings.word_embeddings.weight", False),
    ("electra/embeddings/LayerNorm/gamma", "electra.embeddings.LayerNorm.weight", False),
    ("generator/encoder/layer_11/attention/self/value/kernel",
     "electra.encoder.layer.11.attention.self.value.weight", True),
    ("electra/encoder/layer_0/output/LayerNorm/beta", "electra.encoder.layer.0.output.LayerNorm.bias", False),
    ("discriminator_predictions/dense_1/bias", "discriminator_predictions.dense_prediction.bias", False),
    ("generator_predictions/output_bias", "generator_lm_head.bias", False),
])
def test_tf1_names_map_to_huggingface_names(tf1_name, hf_name, transposed):
    assert checkpoints.hf_name(tf1_name) == (hf_name, transposed)


def test_matches_hugging_face_electra_numerically(tiny_model):
    """Copy our weights into transformers' ELECTRA by name: same logits."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")

    def hf_model(cls, c):
        hf_config = transformers.ElectraConfig(
            vocab_size=c.vocab_size, embedding_size=c.embedding_size, hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size, max_position_embeddings=c.max_position_embeddings,
            hidden_act="gelu", layer_norm_eps=c.layer_norm_eps)
        model = cls(hf_config).eval()
        return model, model.state_dict()

    inputs = dict(input_ids=torch.tensor(IDS, dtype=torch.long),
                  attention_mask=torch.tensor(MASK, dtype=torch.long),
                  token_type_ids=torch.tensor(SEGMENTS, dtype=torch.long))
    positions = np.tile(np.arange(IDS.shape[1], dtype=np.int32), (2, 1))
    ours = {"discriminator": tiny_model.discriminator_logits(IDS, MASK, SEGMENTS).numpy(),
            "generator": tiny_model.generator_logits(IDS, MASK, SEGMENTS, positions).numpy()}
    for part, cls, c in (("discriminator", transformers.ElectraForPreTraining, TINY),
                         ("generator", transformers.ElectraForMaskedLM, tiny_model.generator_config)):
        model, state = hf_model(cls, c)
        rows = checkpoints.hf_weights(tiny_model.tf1_weights(part))
        tied = {"generator_lm_head.weight"} if part == "generator" else set()
        assert set(state) - tied == {name for name, _, _ in rows}
        with torch.no_grad():
            for name, variable, transposed in rows:
                value = variable.numpy().T if transposed else variable.numpy()
                state[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
            theirs = model(**inputs).logits.numpy()
        np.testing.assert_allclose(ours[part][MASK > 0], theirs[MASK > 0], atol=1e-5)


def test_mlm_logits_are_tied_to_word_embeddings(tiny_model):
    head = tiny_model.generator_predictions
    hidden = tf.random.stateless_normal([2, 3, 16], seed=[1, 2])
    h = head.layer_norm(head.dense(hidden)).numpy()
    expected = h @ tiny_model.embeddings.word_embeddings.numpy().T + head.output_bias.numpy()
    np.testing.assert_allclose(head(hidden, tiny_model.embeddings.word_embeddings), expected,
                               rtol=1e-5, atol=1e-5)
    assert not any(v.shape == (16, 50) or v.shape == (50, 16) for v in head.weights)


def test_padding_does_not_change_real_positions(tiny_model):
    other = IDS.copy()
    other[0, 5:] = [33, 44]  # different ids under input_mask == 0
    a = tiny_model.discriminator(IDS, MASK, SEGMENTS)["sequence_output"].numpy()
    b = tiny_model.discriminator(other, MASK, SEGMENTS)["sequence_output"].numpy()
    np.testing.assert_allclose(a[0, :5], b[0, :5], atol=1e-6)


def test_encoder_exposes_sequence_and_cls_output(tiny_model):
    out = tiny_model.discriminator(IDS, MASK, SEGMENTS)
    assert out["sequence_output"].shape == (2, 7, 32)
    np.testing.assert_array_equal(out["cls_output"], out["sequence_output"][:, 0])


def test_dropout_is_a_function_of_the_seed(tiny_model):
    def run(seed, training=True):
        return tiny_model.discriminator_logits(IDS, MASK, SEGMENTS, training=training,
                                               seed=tf.constant(seed)).numpy()
    np.testing.assert_array_equal(run([1, 2]), run([1, 2]))
    assert not np.allclose(run([1, 2]), run([1, 3]))
    np.testing.assert_array_equal(run([1, 2], training=False), run([5, 6], training=False))


def test_serialisation_round_trip(tiny_model):
    encoder = modeling.ElectraEncoder.from_config(tiny_model.discriminator.get_config())
    assert encoder.config == TINY and encoder.name == "electra"
    encoder.build()
    assert [v.shape for v in encoder.weights] == [v.shape for v in tiny_model.discriminator.weights]
    clone = modeling.ElectraPretrainer.from_config(tiny_model.get_config())
    assert clone.generator_config == tiny_model.generator_config
    assert modeling.count_params(clone.weights) == modeling.count_params(tiny_model.weights)


def test_masked_lm_variant_uses_discriminator_sized_encoder():
    model = modeling.ElectraPretrainer(TINY, electra_objective=False)
    assert model.mlm_encoder is model.discriminator and not hasattr(model, "generator")
    names = [n for n, _ in model.tf1_weights()]
    assert "generator_predictions/dense/kernel" in names
    assert not any(n.startswith(("generator/", "discriminator_predictions")) for n in names)
    with pytest.raises(ValueError, match="no discriminator head"):
        checkpoints.hf_weights(model.tf1_weights("discriminator"))


def test_mixed_precision_keeps_logits_float32():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = modeling.ElectraPretrainer(TINY, TINY.generator(0.5))
        assert model.embeddings.word_embeddings.dtype == "float32"
        out = model({"input_ids": IDS, "input_mask": MASK, "segment_ids": SEGMENTS})
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert out["mlm_logits"].dtype == tf.float32 and out["disc_logits"].dtype == tf.float32
    assert np.isfinite(out["disc_logits"].numpy()).all()


def test_bad_sizes_fail_clearly():
    with pytest.raises(ValueError, match="hidden_size 30 is not a multiple of num_attention_heads 4"):
        architecture.EncoderConfig(**{**TINY.to_dict(), "hidden_size": 30})
    with pytest.raises(ValueError, match="vocab_size"):
        architecture.EncoderConfig.from_config(config.load_config(config.PRETRAIN, model_size="debug"))
    with pytest.raises(ValueError, match="share vocab_size and embedding_size"):
        modeling.ElectraPretrainer(TINY, architecture.EncoderConfig(**{**TINY.to_dict(), "vocab_size": 60}))


def test_sinusoidal_position_init_encodes_distance():
    sinusoidal = architecture.EncoderConfig(**{**TINY.to_dict(), "position_embedding_init": "sinusoidal"})
    embeddings = modeling.Embeddings(sinusoidal)
    embeddings.build()
    table = embeddings.position_embeddings.numpy()
    half = TINY.embedding_size // 2
    scale = TINY.initializer_range * np.sqrt(2.0)
    np.testing.assert_allclose(table[0], np.r_[np.zeros(half), np.full(half, scale)], atol=1e-7)
    np.testing.assert_allclose(table[5, 0], np.sin(5.0) * scale, rtol=1e-5)
    np.testing.assert_allclose(table[5, half], np.cos(5.0) * scale, rtol=1e-5)
    # sin a sin b + cos a cos b = cos(a - b): row products depend on the distance only
    gram = table @ table.T
    for distance in (1, 3, 10):
        np.testing.assert_allclose(np.diagonal(gram, distance), gram[0, distance], rtol=1e-4)
    assert gram[0, 1] > gram[0, 3] > gram[0, 10]
    # the default stays the random initialiser of BERT/ELECTRA
    random_embeddings = modeling.Embeddings(TINY)
    random_embeddings.build()
    random_gram = random_embeddings.position_embeddings.numpy()
    random_gram = random_gram @ random_gram.T
    assert np.std(np.diagonal(random_gram, 1)) > 0.1 * abs(np.mean(np.diagonal(random_gram, 1)))


def test_unknown_position_init_fails_naming_the_key():
    with pytest.raises(ValueError, match="position_embedding_init must be one of"):
        architecture.EncoderConfig(**{**TINY.to_dict(), "position_embedding_init": "rope"})
    with pytest.raises(config.ConfigError, match="position_embedding_init"):
        config.load_config(config.PRETRAIN, overrides=["position_embedding_init=rope"])
    cfg = config.load_config(config.PRETRAIN, model_size="debug", vocab_size=50,
                             overrides=["position_embedding_init=sinusoidal"])
    assert architecture.EncoderConfig.from_config(cfg).position_embedding_init == "sinusoidal"


def test_too_long_sequence_fails_clearly(tiny_model):
    ids = np.ones([1, 41], np.int32)
    with pytest.raises(ValueError, match="sequence length 41 exceeds max_position_embeddings 40"):
        tiny_model.discriminator(ids, ids, np.zeros_like(ids))


def test_model_only_checkpoint_saves_and_restores_every_weight(tmp_path):
    cfg = config.load_config(config.PRETRAIN, model_size="debug", vocab_size=100)
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "model"))
    saved = [n for n, _ in tf.train.list_variables(path)
             if n.startswith("model/") and n.endswith("VARIABLE_VALUE")]
    assert len(saved) == len({id(w) for w in model.weights})

    other = modeling.ElectraPretrainer.from_project_config(cfg)
    for weight in other.weights:
        weight.assign(tf.zeros_like(weight))
    tf.train.Checkpoint(model=other).restore(path).assert_existing_objects_matched()
    for mine, theirs in zip(model.weights, other.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_layers_left_at_tf1_dense_default_start_glorot_uniform(tiny_model):
    """As google-research/electra: `embeddings_project` and the discriminator's output
    layer take tf.layers.dense's default glorot-uniform kernel, the rest truncated normal."""
    def limit(kernel):
        return np.sqrt(6.0 / sum(kernel.shape))
    for kernel in (tiny_model.discriminator.embeddings_project.kernel,
                   tiny_model.discriminator_predictions.dense_prediction.kernel):
        values = kernel.numpy()
        assert np.abs(values).max() <= limit(values)
        assert np.abs(values).max() > 0.5 * limit(values) > 3 * TINY.initializer_range
    query = tiny_model.discriminator.encoder_layers[0].query.kernel.numpy()
    assert np.abs(query).max() <= 2 * TINY.initializer_range  # truncated at two stddevs


def _sharing_model(sharing):
    keras.utils.set_random_seed(0)
    return modeling.ElectraPretrainer(TINY, TINY.generator(0.5), embedding_sharing=sharing)


def _gradients(loss_fn, variables):
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, variables)
    return [0.0 if g is None else float(tf.norm(tf.convert_to_tensor(g))) for g in grads]


def test_gdes_discriminator_loss_trains_only_the_deltas():
    model = _sharing_model("gdes")
    labels = tf.constant(np.random.default_rng(0).integers(0, 2, IDS.shape), tf.float32)
    positions = np.tile(np.arange(IDS.shape[1], dtype=np.int32), (2, 1))

    def rtd_loss():
        logits = model.discriminator_logits(IDS, MASK, SEGMENTS)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))

    def mlm_loss():
        logits = model.generator_logits(IDS, MASK, SEGMENTS, positions)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(IDS, logits))
    shared, deltas = model.embeddings.tables(), model.embedding_deltas.deltas
    rtd = _gradients(rtd_loss, shared + deltas)
    assert rtd[:3] == [0.0, 0.0, 0.0] and min(rtd[3:]) > 0
    mlm = _gradients(mlm_loss, shared + deltas)
    assert min(mlm[:3]) > 0 and mlm[3:] == [0.0, 0.0, 0.0]
    # the LayerNorm after the tables stays shared, as in google-research/electra
    assert min(_gradients(rtd_loss, model.embeddings.layer_norm.trainable_variables)) > 0


def test_gdes_discriminator_starts_as_the_tied_one_and_reads_shared_plus_delta():
    tied, gdes = _sharing_model("tied"), _sharing_model("gdes")
    np.testing.assert_array_equal(tied.discriminator_logits(IDS, MASK, SEGMENTS),
                                  gdes.discriminator_logits(IDS, MASK, SEGMENTS))
    gdes.embedding_deltas.deltas[0].assign(tf.ones_like(gdes.embedding_deltas.deltas[0]))
    tied.embeddings.word_embeddings.assign_add(tf.ones_like(tied.embeddings.word_embeddings))
    np.testing.assert_allclose(tied.discriminator_logits(IDS, MASK, SEGMENTS),
                               gdes.discriminator_logits(IDS, MASK, SEGMENTS), atol=1e-5)


@pytest.mark.parametrize("sharing", ["gdes", "untied"])
def test_every_weight_has_one_tf1_name_under_each_sharing(sharing):
    model = _sharing_model(sharing)
    named = model.tf1_weights()
    assert len({name for name, _ in named}) == len(named)
    assert sorted(id(v) for _, v in named) == sorted(id(v) for v in model.trainable_variables)
    names = dict(named)
    if sharing == "untied":
        assert names["generator/embeddings/word_embeddings"] is not names[
            "electra/embeddings/word_embeddings"]
        assert model.generator.embeddings is not model.discriminator.embeddings
    else:
        assert names["electra/embeddings/word_embeddings_delta"].shape == (50, 16)


def test_embedding_sharing_is_a_checked_config_key():
    cfg = config.load_config(config.PRETRAIN, model_size="debug", vocab_size=50,
                             overrides=["embedding_sharing=gdes"])
    assert modeling.ElectraPretrainer.from_project_config(cfg).embedding_deltas is not None
    with pytest.raises(config.ConfigError, match="embedding_sharing"):
        config.load_config(config.PRETRAIN, overrides=["embedding_sharing=half"])
    masked_lm = config.load_config(config.PRETRAIN, model_size="debug", vocab_size=50,
                                   overrides=["embedding_sharing=gdes", "electra_objective=false"])
    assert modeling.ElectraPretrainer.from_project_config(masked_lm).embedding_deltas is None
