"""Dynamic masking and the ELECTRA (or plain masked-LM) pretraining loss.

Pure TensorFlow functions with static shapes (TPU/XLA friendly). All randomness is
stateless and comes from an explicit `seed` (int tensor of shape [2]), so a step is a
function of (weights, batch, seed): resume and determinism are controlled by the caller.
Pass the SAME seed on every replica, e.g. `randomness.step_seed(base_seed, step)`: each example
draws its own numbers by its index in the global batch, so a global batch split over
replicas is masked, dropped out and sampled exactly as on one device.

The driver's contract (inside `strategy.run`):

    loss, metrics = pretraining_losses(model, features, seed, objective, training=True)

* `features`: dict of int32 [B, L] "input_ids", "input_mask", "segment_ids" (as read
  from the shards; masking happens here, every step anew).
* `loss`: float32 scalar, THIS REPLICA'S SHARE of the global-batch loss: losses are
  normalised by the token counts of the whole global batch (all-reduced), so summing
  `loss` over replicas gives the global mean. Use it as is (do not divide by
  `num_replicas_in_sync`) and let the optimizer sum gradients over replicas; a
  MirroredStrategy run then matches one device with the same global batch.
* `metrics`: float32 scalars already reduced over the global batch (the same value on
  every replica): "total_loss", "mlm_loss", "mlm_accuracy", and with the ELECTRA
  objective "sampled_token_accuracy", "disc_loss", "disc_accuracy" (over real tokens),
  "disc_precision", "disc_recall" (over maskable tokens: the special tokens are never
  replaced, and easy to call original); plus per-token float32 [B, L] tensors for AUC
  metrics: "disc_probs", "disc_labels", "disc_weights" (1 on maskable tokens) and
  "disc_all_weights" (= input_mask).

Masking follows google-research/electra's `pretrain_helpers.mask`, with positions drawn
WITHOUT replacement: [PAD], [CLS], [SEP] and [MASK] are never chosen; a sequence with
T real tokens gets round(T * mask_prob) predictions, clipped to [1, N] (and to the number
of maskable tokens), N = max_predictions_per_seq. With the ELECTRA objective 85% of the
chosen tokens become [MASK] and 15% stay as they are (ELECTRA never inserts random
tokens; the generator does that). With `electra_objective=False` the model is a BERT-style
masked LM over the discriminator-sized encoder, and masking is BERT's 80% [MASK] /
10% random token (uniform over the vocabulary) / 10% unchanged.

Whole-word masking chooses words (a word piece plus its "##" continuations, i.e. a
Korean eojeol) in random order and masks all their pieces; words are taken while the
count so far is below the target and the total stays within N, so a word is never split.
"""
import dataclasses
import math
from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from electra_ko import training
from electra_ko.randomness import random_uniform, split_seed


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """What `pretraining_losses` needs from the project config, plus the vocab's ids."""

    max_predictions_per_seq: int
    mask_prob: float
    pad_id: int
    cls_id: int
    sep_id: int
    mask_id: int
    electra_objective: bool = True
    gen_weight: float = 1.0
    disc_weight: float = 50.0
    temperature: float = 1.0
    # [vocab_size] bools, True for a piece that continues the previous word; None = token-level
    word_continuation: Optional[np.ndarray] = dataclasses.field(default=None, compare=False,
                                                                 repr=False)

    @classmethod
    def from_config(cls, cfg, special_ids: Mapping[str, int],
                    word_continuation: Optional[np.ndarray] = None) -> "ObjectiveConfig":
        """`special_ids` as `Tokenizer.special_ids`; `word_continuation` (from
        `continuation_table`) is required when `cfg.whole_word_masking` is set."""
        if cfg.whole_word_masking and word_continuation is None:
            raise ValueError("whole_word_masking needs the vocabulary's continuation table "
                             "(masking.continuation_table(tokens))")
        return cls(max_predictions_per_seq=cfg.max_predictions_per_seq, mask_prob=cfg.mask_prob,
                   pad_id=special_ids["pad"], cls_id=special_ids["cls"],
                   sep_id=special_ids["sep"], mask_id=special_ids["mask"],
                   electra_objective=cfg.electra_objective, gen_weight=cfg.gen_weight,
                   disc_weight=cfg.disc_weight, temperature=cfg.temperature,
                   word_continuation=word_continuation if cfg.whole_word_masking else None)

    @property
    def mask_token_fraction(self) -> float:
        return 0.85 if self.electra_objective else 0.8

    @property
    def random_token_fraction(self) -> float:
        return 0.0 if self.electra_objective else 0.1


def continuation_table(tokens: Sequence[str], kind: str = "wordpiece") -> np.ndarray:
    """True for vocabulary entries that continue a word: "##x" in WordPiece, a piece
    without the "▁" word-start mark in SentencePiece. Bracketed specials never continue."""
    if kind not in ("wordpiece", "sentencepiece"):
        raise ValueError(f"unknown tokenizer kind {kind!r}")

    def continues(token):
        if token.startswith("[") and token.endswith("]"):
            return False
        return token.startswith("##") if kind == "wordpiece" else not token.startswith("\u2581")
    return np.array([continues(t) for t in tokens], dtype=bool)


# ----------------------------------------------------------------------------- helpers

def gather_positions(sequence, positions):
    """sequence [B, L] or [B, L, D], positions [B, N] -> [B, N] or [B, N, D]."""
    return tf.gather(sequence, positions, batch_dims=1)


def scatter_positions(sequence, positions, updates, weights):
    """Write `updates` [B, N] into `sequence` [B, L] at `positions` where `weights` > 0.

    Positions with weight > 0 must be distinct within a row (masking guarantees it).
    One-hot arithmetic instead of a scatter: deterministic and XLA friendly.
    """
    sequence, positions = tf.convert_to_tensor(sequence), tf.convert_to_tensor(positions)
    length = sequence.shape[1]
    hits = tf.one_hot(positions, length, dtype=sequence.dtype) * tf.cast(
        tf.convert_to_tensor(weights) > 0, sequence.dtype)[..., tf.newaxis]                     # [B, N, L]
    written = tf.reduce_max(hits, axis=1) > 0
    values = tf.reduce_sum(hits * tf.cast(updates, sequence.dtype)[..., tf.newaxis], axis=1)
    return tf.where(written, values, sequence)


def sample_categorical(logits, temperature: float, seed):
    """One token id per row of `logits` [B, ..., V], drawn from softmax(logits / temperature).

    Exact two-stage inverse-CDF sampling: pick a block of about sqrt(V) consecutive ids
    with probability equal to its share of the mass, then an id inside the block by its
    share of the block. Each row needs two uniforms instead of Gumbel-max's V (whose
    noise, logs and argmax XLA fuses into one single-threaded loop, ~14x slower on CPU).
    The uniforms come from `random_uniform`, so rows draw per example (replica and XLA
    parity) and the resolution is that of a 24-bit uniform, as with Gumbel noise.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab_size = logits.shape[-1]
    block = math.isqrt(vocab_size - 1) + 1
    num_blocks = -(-vocab_size // block)
    scaled = tf.reshape(logits / temperature, [-1, vocab_size])
    scaled = tf.pad(scaled, [[0, 0], [0, num_blocks * block - vocab_size]],
                    constant_values=-float("inf"))                         # padding: weight 0
    weights = tf.exp(scaled - tf.reduce_max(scaled, axis=-1, keepdims=True))
    weights = tf.reshape(weights, [-1, num_blocks, block])
    uniforms = tf.reshape(random_uniform(tf.concat([tf.shape(logits)[:-1], [2]], 0), seed), [-1, 2])
    chosen_block = inverse_cdf(tf.reduce_sum(weights, axis=-1), uniforms[:, 0])
    inside = inverse_cdf(tf.gather(weights, chosen_block, batch_dims=1), uniforms[:, 1])
    ids = tf.minimum(chosen_block * block + inside, vocab_size - 1)
    return tf.stop_gradient(tf.reshape(ids, tf.shape(logits)[:-1]))


def inverse_cdf(weights, uniform):
    """Index i of each row of non-negative `weights` [R, K] with cdf[i-1] < u * total <= cdf[i].

    A sequential running sum never decreases, so a zero-weight entry is never chosen;
    the caller still clamps the id, in case a compiler sums in another order.
    """
    cdf = tf.cumsum(weights, axis=-1)
    target = uniform[:, tf.newaxis] * cdf[:, -1:]
    return tf.reduce_sum(tf.cast(cdf < target, tf.int32), axis=-1)


# ----------------------------------------------------------------------------- masking

class MaskedInputs(NamedTuple):
    input_ids: tf.Tensor            # [B, L] with [MASK] (and random tokens for BERT-style)
    masked_lm_positions: tf.Tensor  # [B, N] int32, 0 in unused slots
    masked_lm_ids: tf.Tensor        # [B, N] int32 original tokens, 0 in unused slots
    masked_lm_weights: tf.Tensor    # [B, N] float32, 1 for used slots


def maskable(input_ids, input_mask, objective: ObjectiveConfig):
    """Real tokens other than [PAD], [CLS], [SEP], [MASK]."""
    special = tf.constant([objective.pad_id, objective.cls_id, objective.sep_id, objective.mask_id],
                          input_ids.dtype)
    is_special = tf.reduce_any(input_ids[..., tf.newaxis] == special, axis=-1)
    return (input_mask > 0) & ~is_special


def word_spans(input_ids, candidates, word_continuation):
    """Per token: its word's random-order key index, the token's offset inside its word
    and the word's length (0 for non-candidates), each int32 [B, L]. A word is a run of
    candidates; a continuation piece after a non-candidate starts a word.

    Sorts instead of segment reductions: every token would scatter into its word's
    segment, and scatters with that many collisions serialise on a TPU.
    """
    batch, length = input_ids.shape
    continues = tf.gather(tf.constant(word_continuation, tf.bool), input_ids)
    previous_candidate = tf.pad(candidates[:, :-1], [[0, 0], [1, 0]])
    starts = candidates & ~(continues & previous_candidate)
    continued = tf.pad(candidates[:, 1:] & ~starts[:, 1:], [[0, 0], [0, 1]])
    ends = candidates & ~continued
    word_index = tf.maximum(tf.cumsum(tf.cast(starts, tf.int32), axis=1) - 1, 0)
    positions = tf.broadcast_to(tf.range(length), [batch, length])

    def marked_positions_first(marks):  # [B, L]: the marked positions in order, then the rest
        return tf.argsort(tf.where(marks, positions, length + positions), axis=1, stable=True)

    word_first = tf.gather(marked_positions_first(starts), word_index, batch_dims=1)
    word_last = tf.gather(marked_positions_first(ends), word_index, batch_dims=1)
    word_length = tf.where(candidates, word_last - word_first + 1, 0)
    return word_index, positions - word_first, word_length


def choose_positions(candidates, num_to_predict, max_predictions, seed, spans=None):
    """Sample maskable tokens without replacement -> (positions [B, N], weights [B, N]).

    Tokens are ranked by a random key shared by all pieces of a word (a stable sort keeps
    each word's pieces together); a word is taken while the pieces ranked before it are
    fewer than `num_to_predict` and all of its pieces fit into N.
    """
    batch, length = candidates.shape
    scores = random_uniform([batch, length], seed)
    if spans is None:
        offset, word_length = tf.zeros_like(scores, tf.int32), tf.ones_like(scores, tf.int32)
    else:
        word_index, offset, word_length = spans
        scores = tf.gather(scores, word_index, batch_dims=1)
        candidates &= word_length <= max_predictions  # would block every word ranked after it
    keys = tf.where(candidates, scores, -1.0)
    order = tf.argsort(keys, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)                          # inverse permutation
    ranked_before_word = rank - offset
    chosen = (candidates & (ranked_before_word < num_to_predict[:, tf.newaxis])
              & (ranked_before_word + word_length <= max_predictions))
    # chosen tokens first, in position order (top_k keeps the lower index on ties)
    _, positions = tf.math.top_k(tf.cast(chosen, tf.float32), k=max_predictions)
    count = tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1)
    weights = tf.sequence_mask(count, max_predictions, dtype=tf.float32)
    return positions * tf.cast(weights, tf.int32), weights


def mask_inputs(input_ids, input_mask, seed, objective: ObjectiveConfig,
                vocab_size: Optional[int] = None) -> MaskedInputs:
    """Choose positions and corrupt them (see the module docstring for the recipe).

    `vocab_size` is needed only for BERT-style random-token replacement.
    """
    input_ids = tf.cast(input_ids, tf.int32)
    input_mask = tf.cast(input_mask, tf.int32)
    max_predictions = objective.max_predictions_per_seq
    position_seed, action_seed, token_seed = split_seed(seed, 3)

    candidates = maskable(input_ids, input_mask, objective)
    real_tokens = tf.cast(tf.reduce_sum(input_mask, axis=1), tf.float32)
    num_to_predict = tf.clip_by_value(tf.cast(tf.round(real_tokens * objective.mask_prob), tf.int32),
                                      1, max_predictions)
    spans = (None if objective.word_continuation is None
             else word_spans(input_ids, candidates, objective.word_continuation))
    positions, weights = choose_positions(candidates, num_to_predict, max_predictions,
                                          position_seed, spans)
    original = gather_positions(input_ids, positions) * tf.cast(weights, tf.int32)

    action = random_uniform(positions.shape, action_seed)
    replacement = tf.where(action < objective.mask_token_fraction, objective.mask_id, original)
    if objective.random_token_fraction > 0:
        if vocab_size is None:
            raise ValueError("BERT-style masking (electra_objective=False) needs vocab_size")
        random_ids = tf.cast(random_uniform(positions.shape, token_seed) * vocab_size, tf.int32)
        use_random = (action >= objective.mask_token_fraction) & (
            action < objective.mask_token_fraction + objective.random_token_fraction)
        replacement = tf.where(use_random, random_ids, replacement)
    masked_ids = scatter_positions(input_ids, positions, replacement, weights)
    return MaskedInputs(tf.stop_gradient(masked_ids), positions, original, weights)


# ----------------------------------------------------------------------------- losses

def global_sums(values: Mapping[str, tf.Tensor]) -> dict:
    """Sum scalars over all replicas with one all-reduce (identity without a strategy)."""
    names = sorted(values)
    stacked = tf.stack([tf.cast(values[n], tf.float32) for n in names])
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        stacked = context.all_reduce(tf.distribute.ReduceOp.SUM, stacked)
    return dict(zip(names, tf.unstack(stacked)))


def label_is_top(logits, labels):
    """True where the label's logit is the row's maximum (a tie for the top counts).

    Same as argmax == label without ties; XLA's CPU argmax over the vocabulary is a
    single-threaded index-tracking loop, a max-reduction is not (125 -> 6 CPU-ms).
    """
    label_logits = tf.gather(logits, labels, batch_dims=labels.shape.rank)
    return label_logits >= tf.reduce_max(logits, axis=-1)


def mlm_sums(logits, masked: MaskedInputs, sampled_ids=None) -> dict:
    weights = masked.masked_lm_weights
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=masked.masked_lm_ids, logits=logits)
    correct = label_is_top(logits, masked.masked_lm_ids)
    sums = {"mlm_nll": tf.reduce_sum(nll * weights), "mlm_weight": tf.reduce_sum(weights),
            "mlm_correct": tf.reduce_sum(tf.cast(correct, tf.float32) * weights)}
    if sampled_ids is not None:
        sums["sampled_correct"] = tf.reduce_sum(
            tf.cast(sampled_ids == masked.masked_lm_ids, tf.float32) * weights)
    return sums


def disc_sums(logits, labels, token_weights, maskable_weights) -> dict:
    """Loss and accuracy over real tokens (`token_weights`), as the reference; precision and
    recall over the tokens that can be replaced (`maskable_weights`)."""
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    predicted = tf.cast(logits > 0, tf.float32)
    return {"disc_loss_sum": tf.reduce_sum(losses * token_weights),
            "disc_tokens": tf.reduce_sum(token_weights),
            "disc_correct": tf.reduce_sum(tf.cast(predicted == labels, tf.float32) * token_weights),
            "disc_true_positive": tf.reduce_sum(predicted * labels * maskable_weights),
            "disc_predicted_positive": tf.reduce_sum(predicted * maskable_weights),
            "disc_label_positive": tf.reduce_sum(labels * maskable_weights)}


def ratio(total, numerator: str, denominator: str):
    return tf.math.divide_no_nan(total[numerator], total[denominator])


def summarise(total, objective: ObjectiveConfig) -> dict:
    """Global-batch metrics from all-reduced sums."""
    metrics = {"mlm_loss": ratio(total, "mlm_nll", "mlm_weight"),
               "mlm_accuracy": ratio(total, "mlm_correct", "mlm_weight")}
    metrics["total_loss"] = objective.gen_weight * metrics["mlm_loss"]
    if objective.electra_objective:
        metrics.update(
            sampled_token_accuracy=ratio(total, "sampled_correct", "mlm_weight"),
            disc_loss=ratio(total, "disc_loss_sum", "disc_tokens"),
            disc_accuracy=ratio(total, "disc_correct", "disc_tokens"),
            disc_precision=ratio(total, "disc_true_positive", "disc_predicted_positive"),
            disc_recall=ratio(total, "disc_true_positive", "disc_label_positive"))
        metrics["total_loss"] += objective.disc_weight * metrics["disc_loss"]
    return metrics


def pretraining_losses(model, features, seed, objective: ObjectiveConfig, training: bool = True):
    """One step's loss and metrics; see the module docstring for the contract."""
    input_ids = tf.cast(features["input_ids"], tf.int32)
    input_mask = tf.cast(features["input_mask"], tf.int32)
    segment_ids = tf.cast(features["segment_ids"], tf.int32)
    mask_seed, generator_seed, sample_seed, discriminator_seed = split_seed(seed, 4)

    masked = mask_inputs(input_ids, input_mask, mask_seed, objective,
                         vocab_size=model.discriminator_config.vocab_size)
    mlm_logits = model.generator_logits(masked.input_ids, input_mask, segment_ids,
                                        masked.masked_lm_positions, training=training,
                                        seed=generator_seed)
    loss_terms = [(objective.gen_weight, "mlm_nll", "mlm_weight")]
    per_token = {}
    if objective.electra_objective:
        sampled = sample_categorical(mlm_logits, objective.temperature, sample_seed)
        fake_ids = scatter_positions(input_ids, masked.masked_lm_positions, sampled,
                                     masked.masked_lm_weights)
        labels = tf.cast(fake_ids != input_ids, tf.float32)  # replaced AND differs from original
        disc_logits = model.discriminator_logits(fake_ids, input_mask, segment_ids,
                                                 training=training, seed=discriminator_seed)
        token_weights = tf.cast(input_mask, tf.float32)
        maskable_weights = tf.cast(maskable(input_ids, input_mask, objective), tf.float32)
        local = {**mlm_sums(mlm_logits, masked, sampled),
                 **disc_sums(disc_logits, labels, token_weights, maskable_weights)}
        loss_terms.append((objective.disc_weight, "disc_loss_sum", "disc_tokens"))
        per_token = dict(disc_probs=tf.sigmoid(disc_logits), disc_labels=labels,
                         disc_weights=maskable_weights, disc_all_weights=token_weights)
    else:
        local = mlm_sums(mlm_logits, masked)
    total = global_sums(local)
    loss = tf.add_n([weight * tf.math.divide_no_nan(local[numerator], total[denominator])
                     for weight, numerator, denominator in loss_terms])
    return loss, {**summarise(total, objective), **per_token}


# ----------------------------------------------------------------------------- the training task

AUC_BINS = 200  # histogram resolution of the discriminator AUC
_GLOBAL_METRICS = ("mlm_loss", "mlm_accuracy", "sampled_token_accuracy", "disc_loss",
                   "disc_accuracy", "disc_precision", "disc_recall")
_LOG_NAMES = {"mlm_accuracy": "mlm_acc", "sampled_token_accuracy": "sampled_acc",
              "disc_accuracy": "disc_acc"}


def electra_task(cfg, model, objective):
    """The trainer's `Task` for `pretraining_losses`: its global-batch metrics are averaged
    over steps, and the discriminator's per-token probabilities feed two AUC histograms
    (maskable tokens: disc_auc; all real tokens: disc_auc_all)."""
    names = [n for n in _GLOBAL_METRICS if objective.electra_objective or not n.startswith(
        ("disc", "sampled"))]
    shapes = {name: () for name in names}
    if objective.electra_objective:
        shapes.update({name: (AUC_BINS,) for name in _AUC_SUMS})

    def loss_fn(features, seed, training):
        loss, metrics = pretraining_losses(model, features, seed, objective, training)
        share = 1.0 / tf.distribute.get_replica_context().num_replicas_in_sync
        sums = {name: metrics[name] * share for name in names}
        if objective.electra_objective:
            probs, labels = metrics["disc_probs"], metrics["disc_labels"]
            sums.update(auc_histograms(probs, labels, metrics["disc_weights"]))
            every_token = auc_histograms(probs, labels, metrics["disc_all_weights"])
            sums.update({_ALL_TOKENS_PREFIX + name: value for name, value in every_token.items()})
        return loss, sums

    def summarize(sums):
        metrics = {_LOG_NAMES.get(n, n): float(sums[n] / sums["steps"]) for n in names}
        if objective.electra_objective:
            metrics["disc_auc"] = auc_from_histograms(sums["auc_positive"], sums["auc_negative"])
            metrics["disc_auc_all"] = auc_from_histograms(
                sums[_ALL_TOKENS_PREFIX + "auc_positive"], sums[_ALL_TOKENS_PREFIX + "auc_negative"])
        return metrics

    after_loop = discriminator_health_check(cfg) if objective.electra_objective else None
    return training.Task(model, loss_fn, summarize, shapes, after_loop)


_ALL_TOKENS_PREFIX = "all_tokens_"
_AUC_SUMS = ("auc_positive", "auc_negative", _ALL_TOKENS_PREFIX + "auc_positive",
             _ALL_TOKENS_PREFIX + "auc_negative")


def discriminator_health_check(cfg):
    """after_loop(step, metrics) that warns once when the discriminator still flags no
    token at all `disc_health_check_steps` steps past warm-up (0: never checks)."""
    due = cfg.num_warmup_steps + cfg.disc_health_check_steps
    warned = []

    def check(step, metrics):
        if (warned or not cfg.disc_health_check_steps or step < due
                or metrics["disc_precision"] or metrics["disc_recall"]):
            return
        warned.append(step)
        logging.warning(
            "discriminator health: disc_precision and disc_recall are still 0 at step %d, "
            "%d steps after warm-up: the discriminator calls every token original and is not "
            "learning (disc_auc %.3f over maskable tokens). Try embedding_sharing=gdes, a warm "
            "start (--init_checkpoint from a masked LM or a published ELECTRA), a lower "
            "learning_rate, or a smaller generator (generator_hidden_size). Training goes on.",
            step, step - cfg.num_warmup_steps, metrics["disc_auc"])
    return check


def auc_histograms(probs, labels, weights):
    """Weighted counts of positive and negative tokens per probability bin, [AUC_BINS]
    each. A one-hot product instead of a scatter: every token lands in one of 200 bins,
    and scatters with that many index collisions serialise on a TPU."""
    bins = tf.clip_by_value(tf.cast(tf.cast(probs, tf.float32) * AUC_BINS, tf.int32), 0,
                            AUC_BINS - 1)
    bins, labels, weights = (tf.reshape(t, [-1]) for t in (bins, labels, weights))
    one_hot = tf.one_hot(bins, AUC_BINS, dtype=tf.float32)  # [tokens, AUC_BINS]
    positive = tf.linalg.matvec(one_hot, weights * labels, transpose_a=True)
    negative = tf.linalg.matvec(one_hot, weights * (1.0 - labels), transpose_a=True)
    return {"auc_positive": positive, "auc_negative": negative}


def auc_from_histograms(positive, negative):
    """ROC AUC from binned scores: P(score of a positive > a negative), ties count half."""
    total_pos, total_neg = float(positive.sum()), float(negative.sum())
    if not total_pos or not total_neg:
        return float("nan")
    negatives_below = 0.0
    area = 0.0
    for pos, neg in zip(positive, negative):
        area += pos * (negatives_below + 0.5 * neg)
        negatives_below += neg
    return float(area / (total_pos * total_neg))
