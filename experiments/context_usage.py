"""Does a pretrained masked LM use context? Its loss at [MASK] with and without context.

Masks held-out examples the way pretraining does, then scores the masked-LM head of a
pretraining checkpoint at the [MASK]ed positions three times:

* `context_loss`: the inputs as masked (what pretraining optimises);
* `no_context_loss`: every other real token also replaced by [MASK], so only positions,
  segments and [CLS]/[SEP] remain: the best a model that ignores context can do;
* `unigram_loss`: the loss of always predicting the token frequencies of the whole shard
  (`commonest_token` and its `commonest_share` of the shard's text tokens are printed too).

A model that has learnt to use context has `context_loss` well below the other two; one
stuck at the unigram plateau has all three close together. This is a diagnosis, not a
benchmark of speed: it tells in a minute whether more pretraining steps are being spent on
anything. Last output line: one JSON object.

    python experiments/context_usage.py --model_dir models/tiny_nsmc
"""
import argparse
import json

import numpy as np
import tensorflow as tf

from electra_ko import config, data as data_lib, masking, modeling, vocab as vocab_lib


def load_pretrainer(model_dir, checkpoint=None):
    cfg = config.load_config(config.PRETRAIN, f"{model_dir}/config.json")
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if path is None:
        raise SystemExit(f"error: no checkpoint in {model_dir}")
    tf.train.Checkpoint(model=model).restore(path).expect_partial()
    return cfg, model, path


def masked_nll(model, masked, features, input_ids, mask_id):
    """Mean NLL of the original tokens at the positions that hold [MASK] in `masked`."""
    logits = model.generator_logits(input_ids, features["input_mask"], features["segment_ids"],
                                    masked.masked_lm_positions)
    nll = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=masked.masked_lm_ids,
                                                         logits=logits)
    at_mask = tf.gather(masked.input_ids, masked.masked_lm_positions, batch_dims=1) == mask_id
    weights = masked.masked_lm_weights * tf.cast(at_mask, tf.float32)
    return float(tf.reduce_sum(nll * weights) / tf.reduce_sum(weights)), weights


def text_token_counts(files, max_seq_length, vocab_size, special_ids):
    """How often each id occurs in `files`, [CLS] and [SEP] and padding left out."""
    counts = np.zeros(vocab_size)
    for batch in data_lib.make_dataset(files, 1024, max_seq_length, training=False):
        ids = batch["input_ids"].numpy()[batch["input_mask"].numpy() > 0]
        counts += np.bincount(ids, minlength=vocab_size)
    counts[[special_ids["cls"], special_ids["sep"]]] = 0
    return counts


def context_usage(model_dir, checkpoint=None, shard=None, batch_size=256, seed=0):
    cfg, model, path = load_pretrainer(model_dir, checkpoint)
    tokenizer = vocab_lib.load_tokenizer(cfg.vocab_file)
    objective = masking.ObjectiveConfig.from_config(cfg, tokenizer.special_ids, None)
    files = [shard] if shard else data_lib.shard_files(cfg.pretrain_tfrecords)[-1:]
    features = next(iter(data_lib.make_dataset(files, batch_size, cfg.max_seq_length,
                                               training=False)))
    masked = masking.mask_inputs(features["input_ids"], features["input_mask"],
                                 tf.constant([seed, 1], tf.int64), objective, cfg.vocab_size)
    context, weights = masked_nll(model, masked, features, masked.input_ids, objective.mask_id)
    ids = masked.input_ids
    is_text = (tf.cast(features["input_mask"], tf.bool) & (ids != objective.cls_id)
               & (ids != objective.sep_id))
    no_context, _ = masked_nll(model, masked, features,
                               tf.where(is_text, objective.mask_id, ids), objective.mask_id)
    targets = masked.masked_lm_ids.numpy()[weights.numpy() > 0]
    counts = text_token_counts(files, cfg.max_seq_length, cfg.vocab_size, tokenizer.special_ids)
    smoothed = counts + 0.5
    unigram = float(-np.log(smoothed[targets] / smoothed.sum()).mean())
    commonest = int(counts.argmax())
    return {"model_dir": model_dir, "checkpoint": path, "files": files,
            "masked_tokens": int(targets.size), "context_loss": round(context, 4),
            "no_context_loss": round(no_context, 4), "unigram_loss": round(unigram, 4),
            "commonest_token": tokenizer.tokens[commonest],
            "commonest_share": round(float(counts[commonest] / counts.sum()), 4)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", required=True, help="a pretraining model_dir")
    parser.add_argument("--checkpoint", help="default: the latest in --model_dir")
    parser.add_argument("--shard", help="default: the last shard of the run's data (held out "
                        "under --do_eval)")
    parser.add_argument("--batch_size", type=int, default=256)
    args = parser.parse_args()
    result = context_usage(args.model_dir, args.checkpoint, args.shard, args.batch_size)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
