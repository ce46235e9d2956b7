"""Dynamic masking, Gumbel sampling and the ELECTRA / masked-LM losses."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_ko import architecture, config, masking, modeling

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = dict(pad_id=PAD, cls_id=CLS, sep_id=SEP, mask_id=MASK)
VOCAB = 60
ELECTRA = masking.ObjectiveConfig(max_predictions_per_seq=5, mask_prob=0.15, **SPECIALS)
BERT = masking.ObjectiveConfig(max_predictions_per_seq=5, mask_prob=0.15, electra_objective=False,
                               **SPECIALS)
TINY = architecture.EncoderConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=64, embedding_size=16,
                              max_position_embeddings=32)


def make_batch(lengths, seq_len=32, seed=0):
    """[CLS] tokens [SEP] [PAD]..., with a second segment [SEP] in the middle."""
    rng = np.random.default_rng(seed)
    ids = np.zeros([len(lengths), seq_len], np.int32)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(5, VOCAB, n)
        ids[row, [0, n // 2, n - 1]] = [CLS, SEP, SEP]
    return ids, (ids > 0).astype(np.int32)


def features(ids, mask):
    return dict(input_ids=tf.constant(ids), input_mask=tf.constant(mask),
                segment_ids=tf.zeros_like(tf.constant(ids)))


def test_gather_positions_exact():
    seq = tf.constant([[10, 11, 12, 13], [20, 21, 22, 23]])
    np.testing.assert_array_equal(masking.gather_positions(seq, [[3, 0], [1, 1]]),
                                  [[13, 10], [21, 21]])
    vectors = tf.reshape(tf.range(16), [2, 4, 2])
    np.testing.assert_array_equal(masking.gather_positions(vectors, [[2], [0]]), [[[4, 5]], [[8, 9]]])


def test_scatter_positions_writes_only_weighted_slots():
    seq = tf.constant([[10, 11, 12, 13], [20, 21, 22, 23]])
    out = masking.scatter_positions(seq, positions=[[3, 1, 0], [2, 0, 0]],
                                    updates=[[7, 8, 9], [5, 6, 6]],
                                    weights=[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(out, [[10, 8, 12, 7], [20, 21, 5, 23]])



def test_mask_count_specials_and_duplicates():
    lengths = [32, 20, 7, 3, 32, 12]
    ids, mask = make_batch(lengths)
    out = masking.mask_inputs(ids, mask, tf.constant([1, 2]), ELECTRA)
    positions, weights = out.masked_lm_positions.numpy(), out.masked_lm_weights.numpy()
    masked_ids = out.input_ids.numpy()
    for row, n in enumerate(lengths):
        maskable = n - 3
        expected = min(max(1, round(n * 0.15)), 5, maskable)
        count = int(weights[row].sum())
        assert count == expected
        np.testing.assert_array_equal(weights[row], [1.0] * count + [0.0] * (5 - count))
        chosen = positions[row, :count]
        assert len(set(chosen)) == count                           # without replacement
        assert not np.isin(ids[row, chosen], [PAD, CLS, SEP, MASK]).any()
        np.testing.assert_array_equal(positions[row, count:], 0)
        np.testing.assert_array_equal(out.masked_lm_ids[row, :count], ids[row, chosen])
        np.testing.assert_array_equal(out.masked_lm_ids[row, count:], 0)
        untouched = np.setdiff1d(np.arange(32), chosen)
        np.testing.assert_array_equal(masked_ids[row, untouched], ids[row, untouched])
        assert np.isin(masked_ids[row, chosen], [MASK]).sum() + (
            masked_ids[row, chosen] == ids[row, chosen]).sum() == count


def test_sequence_without_maskable_tokens_gets_no_predictions():
    ids = np.array([[CLS, SEP, PAD, PAD, PAD, PAD, PAD, PAD]] * 2, np.int32)
    ids[1, 2] = MASK  # an existing [MASK] is not maskable either
    out = masking.mask_inputs(ids, (ids > 0).astype(np.int32), tf.constant([1, 2]), ELECTRA)
    np.testing.assert_array_equal(out.masked_lm_weights, 0.0)
    np.testing.assert_array_equal(out.input_ids, ids)


def test_masking_is_a_function_of_the_seed():
    ids, mask = make_batch([32] * 4)
    a = masking.mask_inputs(ids, mask, tf.constant([1, 2]), ELECTRA)
    b = masking.mask_inputs(ids, mask, tf.constant([1, 2]), ELECTRA)
    c = masking.mask_inputs(ids, mask, tf.constant([1, 3]), ELECTRA)
    np.testing.assert_array_equal(a.masked_lm_positions, b.masked_lm_positions)
    assert not np.array_equal(a.masked_lm_positions, c.masked_lm_positions)


def replacement_fractions(objective, seed=5):
    ids, mask = make_batch([32] * 2000, seed=1)
    out = masking.mask_inputs(ids, mask, tf.constant([seed, 0]), objective, vocab_size=VOCAB)
    chosen = out.masked_lm_weights.numpy() > 0
    now = masking.gather_positions(out.input_ids, out.masked_lm_positions).numpy()[chosen]
    before = out.masked_lm_ids.numpy()[chosen]
    positions = out.masked_lm_positions.numpy()[chosen]
    return np.mean(now == MASK), np.mean(now == before), positions


def test_electra_masking_is_85_mask_15_keep_and_uniform():
    to_mask, kept, positions = replacement_fractions(ELECTRA)
    assert len(positions) == 2000 * 5
    assert abs(to_mask - 0.85) < 0.015 and abs(kept - 0.15) < 0.015
    assert to_mask + kept == pytest.approx(1.0)  # no random tokens
    # 29 maskable positions (all but 0, 16, 31), each chosen about 10000 / 29 times
    counts = np.bincount(positions, minlength=32)
    assert counts[[0, 16, 31]].sum() == 0
    assert counts[counts > 0].size == 29 and counts[counts > 0].min() > 270 and counts.max() < 420


def test_bert_masking_is_80_10_10():
    to_mask, kept, _ = replacement_fractions(BERT)
    random_tokens = 1.0 - to_mask - kept
    assert abs(to_mask - 0.80) < 0.015
    # a random token equals the original 1/VOCAB of the time: counted as kept
    assert abs(kept - (0.10 + 0.10 / VOCAB)) < 0.015
    assert abs(random_tokens - 0.10 * (1 - 1 / VOCAB)) < 0.015


def test_bert_masking_needs_vocab_size():
    ids, mask = make_batch([32])
    with pytest.raises(ValueError, match="needs vocab_size"):
        masking.mask_inputs(ids, mask, tf.constant([1, 2]), BERT)


def test_continuation_table():
    tokens = ["[PAD]", "[CLS]", "한국", "##어", "▁한국", "어", "##"]
    np.testing.assert_array_equal(masking.continuation_table(tokens),
                                  [False, False, False, True, False, False, True])
    np.testing.assert_array_equal(masking.continuation_table(tokens, "sentencepiece"),
                                  [False, False, True, True, False, True, True])
    with pytest.raises(ValueError, match="unknown tokenizer kind 'bpe'"):
        masking.continuation_table(tokens, "bpe")


def test_whole_word_masking_masks_complete_words():
    continuation = np.zeros(VOCAB, bool)
    continuation[30:] = True  # ids 30.. are "##" pieces
    objective = masking.ObjectiveConfig(max_predictions_per_seq=6, mask_prob=0.15,
                                        word_continuation=continuation, **SPECIALS)
    ids, mask = make_batch([32] * 300, seed=3)
    out = masking.mask_inputs(ids, mask, tf.constant([4, 4]), objective)
    weights = out.masked_lm_weights.numpy()
    for row in range(len(ids)):
        chosen = set(out.masked_lm_positions.numpy()[row, weights[row] > 0])
        # a word = a maskable start followed by maskable continuations
        word_of, word = {}, -1
        for pos in range(32):
            if ids[row, pos] in (PAD, CLS, SEP):
                word = -1
                continue
            if word < 0 or not continuation[ids[row, pos]]:
                word = pos
            word_of[pos] = word
        words = {}
        for pos, start in word_of.items():
            words.setdefault(start, set()).add(pos)
        for start, pieces in words.items():
            assert pieces <= chosen or not pieces & chosen, (row, start, pieces, chosen)
        assert len(chosen) <= 6
        assert len(chosen) >= min(5, min(len(p) for p in words.values()))  # target reached or a word was too long


def segment_word_spans(input_ids, candidates, word_continuation):
    """The scatter-based formulation `masking.word_spans` replaced (segment sums and mins
    over one segment per word), kept as its reference."""
    batch, length = input_ids.shape
    continues = tf.gather(tf.constant(word_continuation, tf.bool), input_ids)
    previous_candidate = tf.pad(candidates[:, :-1], [[0, 0], [1, 0]])
    starts = candidates & ~(continues & previous_candidate)
    word_index = tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1
    segment = tf.where(candidates, word_index + length * tf.range(batch)[:, tf.newaxis],
                       batch * length)
    word_length = tf.gather(tf.math.unsorted_segment_sum(
        tf.cast(candidates, tf.int32), segment, batch * length + 1), segment)
    positions = tf.broadcast_to(tf.range(length), [batch, length])
    word_first = tf.gather(tf.math.unsorted_segment_min(positions, segment, batch * length + 1),
                           segment)
    return tf.maximum(word_index, 0), positions - word_first, word_length


@pytest.mark.parametrize("seed", range(5))
def test_word_spans_without_scatters_equal_the_segment_reference(seed):
    rng = np.random.default_rng(seed)
    table = rng.random(40) < 0.5
    ids = tf.constant(rng.integers(0, 40, (6, 24)), tf.int32)
    candidates = tf.constant(rng.random((6, 24)) < 0.8)
    got = [t.numpy() for t in masking.word_spans(ids, candidates, table)]
    want = [t.numpy() for t in segment_word_spans(ids, candidates, table)]
    real = candidates.numpy()
    for name, a, b in zip(("word_index", "offset", "length"), got, want):
        np.testing.assert_array_equal(a[real], b[real], err_msg=name)
    assert (got[2][~real] == 0).all()


def test_whole_word_masking_needs_the_table():
    cfg = config.load_config(config.PRETRAIN, model_size="debug", vocab_size=VOCAB,
                             whole_word_masking=True)
    special_ids = dict(pad=PAD, unk=UNK, cls=CLS, sep=SEP, mask=MASK)
    with pytest.raises(ValueError, match="continuation table"):
        masking.ObjectiveConfig.from_config(cfg, special_ids)
    objective = masking.ObjectiveConfig.from_config(cfg, special_ids, np.zeros(VOCAB, bool))
    assert objective.max_predictions_per_seq == int((0.15 + 0.005) * 64) == 9


def test_categorical_sampling_matches_the_softmax():
    logits = tf.math.log(tf.constant([[0.6, 0.3, 0.1]] * 20000))
    samples = masking.sample_categorical(logits, 1.0, tf.constant([7, 7])).numpy()
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / 20000, [0.6, 0.3, 0.1], atol=0.015)
    # temperature 0.5 squares the probabilities: 0.36 : 0.09 : 0.01
    hot = masking.sample_categorical(logits, 0.5, tf.constant([7, 8])).numpy()
    np.testing.assert_allclose(np.bincount(hot, minlength=3) / 20000, [0.78261, 0.19565, 0.02174],
                               atol=0.015)


def test_categorical_sampling_over_padded_blocks_is_exact_and_xla_stable():
    """V=37 is 6 blocks of 7 ids plus 5 padded ones; ids with -inf logits never come up."""
    row = np.random.default_rng(0).normal(size=37).astype(np.float32) * 2
    row[[0, 20, 36]] = -np.inf
    logits = tf.constant(np.tile(row, [40, 500, 1]))          # [B, N, V]
    seed = tf.constant([3, 4])
    samples = masking.sample_categorical(logits, 1.0, seed).numpy()
    assert samples.shape == (40, 500) and samples.dtype == np.int32
    probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
    counts = np.bincount(samples.ravel(), minlength=37)
    assert counts[[0, 20, 36]].sum() == 0
    expected = probs * samples.size
    seen = expected > 0
    chi2 = ((counts[seen] - expected[seen]) ** 2 / expected[seen]).sum()
    assert chi2 < 66.0  # 99.9% quantile of chi-square with 33 degrees of freedom
    compiled = tf.function(masking.sample_categorical, jit_compile=True)(logits, 1.0, seed)
    np.testing.assert_array_equal(compiled, samples)
    # each example draws from its own stream, whatever the batch size
    np.testing.assert_array_equal(masking.sample_categorical(logits[:20], 1.0, seed), samples[:20])


def test_label_is_top_agrees_with_argmax_and_counts_ties():
    logits = tf.constant([[[1.0, 3.0, 3.0, 0.0], [2.0, 1.0, 0.0, -1.0]]])
    np.testing.assert_array_equal(masking.label_is_top(logits, tf.constant([[2, 1]])),
                                  [[True, False]])
    np.testing.assert_array_equal(masking.label_is_top(logits, tf.constant([[1, 0]])),
                                  [[True, True]])
    random_logits = tf.random.stateless_normal([6, 7, 50], seed=[1, 1])
    labels = tf.random.stateless_uniform([6, 7], seed=[1, 2], maxval=50, dtype=tf.int32)
    labels = tf.where(tf.range(7) % 2 == 0, tf.argmax(random_logits, -1, output_type=tf.int32),
                      labels)
    np.testing.assert_array_equal(masking.label_is_top(random_logits, labels),
                                  tf.argmax(random_logits, -1, output_type=tf.int32) == labels)


class ScriptedGenerator:
    """Stands in for the model: the generator is sure of a given token per slot."""

    discriminator_config = TINY

    def __init__(self, originals_fn):
        self.originals_fn = originals_fn

    def generator_logits(self, input_ids, input_mask, segment_ids, positions, training, seed):
        originals = self.originals_fn(positions)
        wrong = (originals + 1 - 5) % (VOCAB - 5) + 5
        odd_slot = tf.range(positions.shape[1]) % 2 == 1
        target = tf.where(odd_slot, wrong, originals)   # even slots: the original token
        return 100.0 * tf.one_hot(target, VOCAB)

    def discriminator_logits(self, input_ids, input_mask, segment_ids, training, seed):
        self.fake_ids = input_ids
        return tf.zeros(input_ids.shape)


def test_rtd_label_is_zero_where_the_sample_equals_the_original():
    ids, mask = make_batch([32, 32, 32])
    model = ScriptedGenerator(lambda positions: masking.gather_positions(tf.constant(ids), positions))
    _, metrics = masking.pretraining_losses(model, features(ids, mask), tf.constant([1, 2]), ELECTRA)
    masked = masking.mask_inputs(ids, mask, modeling.split_seed(tf.constant([1, 2]), 4)[0], ELECTRA)
    labels = metrics["disc_labels"].numpy()
    positions = masked.masked_lm_positions.numpy()
    for row in range(3):
        odd = positions[row, 1::2]
        expected = np.zeros(32)
        expected[odd] = 1.0
        np.testing.assert_array_equal(labels[row], expected)
        np.testing.assert_array_equal(model.fake_ids.numpy()[row, positions[row, ::2]],
                                      ids[row, positions[row, ::2]])
    assert float(metrics["sampled_token_accuracy"]) == pytest.approx(9 / 15)
    assert float(metrics["disc_loss"]) == pytest.approx(np.log(2.0), rel=1e-6)
    np.testing.assert_array_equal(metrics["disc_all_weights"], mask)
    special = np.isin(ids, [CLS, SEP])
    np.testing.assert_array_equal(metrics["disc_weights"], mask * ~special)


def test_precision_and_recall_count_maskable_tokens_only():
    """A [CLS] flagged as replaced costs accuracy, not precision: specials are never replaced."""
    sums = masking.disc_sums(logits=tf.constant([5.0, 5.0, -5.0, -5.0]),
                             labels=tf.constant([0.0, 1.0, 1.0, 0.0]),
                             token_weights=tf.constant([1.0, 1.0, 1.0, 1.0]),
                             maskable_weights=tf.constant([0.0, 1.0, 1.0, 1.0]))
    metrics = {name: float(value) for name, value in sums.items()}
    assert metrics["disc_true_positive"] / metrics["disc_predicted_positive"] == 1.0
    assert metrics["disc_true_positive"] / metrics["disc_label_positive"] == 0.5
    assert metrics["disc_correct"] / metrics["disc_tokens"] == 0.5


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(1)
    return modeling.ElectraPretrainer(TINY, TINY.generator(0.5))


def test_losses_and_metrics_are_consistent(tiny_model):
    ids, mask = make_batch([32, 25, 18, 10])
    loss, metrics = masking.pretraining_losses(tiny_model, features(ids, mask), tf.constant([3, 3]),
                                               ELECTRA, training=False)
    assert float(loss) == pytest.approx(float(metrics["mlm_loss"] + 50.0 * metrics["disc_loss"]))
    assert float(loss) == pytest.approx(float(metrics["total_loss"]))
    assert float(metrics["mlm_loss"]) == pytest.approx(np.log(VOCAB), rel=0.1)  # untrained
    assert set(metrics) == {"total_loss", "mlm_loss", "mlm_accuracy", "sampled_token_accuracy",
                            "disc_loss", "disc_accuracy", "disc_precision", "disc_recall",
                            "disc_probs", "disc_labels", "disc_weights", "disc_all_weights"}
    assert metrics["disc_probs"].shape == (4, 32) and metrics["disc_labels"].dtype == tf.float32


def overfit(model, objective, steps=30):
    ids, mask = make_batch([32, 28, 24, 20], seed=2)
    batch = features(ids, mask)
    optimizer = keras.optimizers.Adam(learning_rate=1e-2)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(seed):
        with tf.GradientTape() as tape:
            loss, metrics = masking.pretraining_losses(model, batch, seed, objective)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return metrics

    return [step(tf.constant([0, 1])) for _ in range(steps)]


def test_loss_falls_when_overfitting_one_batch():
    keras.utils.set_random_seed(2)
    history = overfit(modeling.ElectraPretrainer(TINY, TINY.generator(0.5)), ELECTRA)
    first, last = history[0], history[-1]
    assert float(last["mlm_loss"]) < 0.5 * float(first["mlm_loss"])
    assert float(last["total_loss"]) < 0.2 * float(first["total_loss"])


def test_masked_lm_objective_trains_the_discriminator_sized_model():
    keras.utils.set_random_seed(3)
    model = modeling.ElectraPretrainer(TINY, electra_objective=False)
    history = overfit(model, BERT, steps=20)
    assert set(history[0]) == {"total_loss", "mlm_loss", "mlm_accuracy"}
    assert float(history[-1]["mlm_loss"]) < 0.5 * float(history[0]["mlm_loss"])


@pytest.mark.parametrize("sharing", ["tied", "gdes"])
def test_replicas_see_the_same_masks_and_loss_as_one_device(two_cpu_strategy, sharing):
    strategy = two_cpu_strategy
    ids, mask = make_batch([32, 12, 25, 30])
    keras.utils.set_random_seed(1)
    reference = modeling.ElectraPretrainer(TINY, TINY.generator(0.5), embedding_sharing=sharing)
    for delta in reference.embedding_deltas.deltas if sharing == "gdes" else []:
        delta.assign(tf.random.normal(delta.shape, stddev=0.05))
    with strategy.scope():
        model = modeling.ElectraPretrainer(TINY, TINY.generator(0.5), embedding_sharing=sharing)
    model.set_weights(reference.get_weights())
    seed = tf.constant([8, 9])
    single, single_metrics = masking.pretraining_losses(model, features(ids, mask), seed, ELECTRA)
    dataset = tf.data.Dataset.from_tensor_slices(features(ids, mask)).batch(4)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def run(batch):
        loss, metrics = strategy.run(lambda f: masking.pretraining_losses(model, f, seed, ELECTRA),
                                     args=(batch,))
        return strategy.reduce("SUM", loss, None), strategy.experimental_local_results(metrics["mlm_loss"])
    total, per_replica_mlm = run(batch)
    assert float(total) == pytest.approx(float(single), rel=1e-5)
    for value in per_replica_mlm:  # metrics are global-batch values on every replica
        assert float(value) == pytest.approx(float(single_metrics["mlm_loss"]), rel=1e-5)


def test_auc_histograms_without_scatters_equal_segment_sums_and_give_the_exact_auc():
    rng = np.random.default_rng(0)
    probs = rng.random((8, 16)).astype(np.float32)
    probs[0, :3] = [0.0, 1.0, 0.999999]  # the edge bins
    labels = (rng.random((8, 16)) < 0.3).astype(np.float32)
    weights = (rng.random((8, 16)) < 0.9).astype(np.float32)
    got = masking.auc_histograms(tf.constant(probs), tf.constant(labels), tf.constant(weights))
    bins = np.clip((probs * masking.AUC_BINS).astype(np.int32), 0, masking.AUC_BINS - 1).ravel()
    for name, mass in (("auc_positive", weights * labels), ("auc_negative", weights * (1 - labels))):
        reference = tf.math.unsorted_segment_sum(mass.ravel(), bins, masking.AUC_BINS)
        np.testing.assert_array_equal(got[name].numpy(), reference.numpy(), err_msg=name)
    real = weights.ravel() > 0
    p, y = probs.ravel()[real], labels.ravel()[real]
    pairs = [(a > b) + 0.5 * (a == b) for a in p[y == 1] for b in p[y == 0]]
    coarse = masking.auc_from_histograms(got["auc_positive"].numpy(), got["auc_negative"].numpy())
    assert abs(coarse - np.mean(pairs)) < 0.02
