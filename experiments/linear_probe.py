"""Does a pretrained encoder carry the task's signal before fine-tuning? A linear probe.

Freezes an encoder (an `--init_checkpoint` as `electra_ko.finetune` takes it, or a random
initialisation of `--model_config` without one), turns every NSMC review into two
feature vectors, its [CLS] state and the mean of its token states, and fits a logistic
regression on each. Pretraining that learnt something about the reviews lifts both
accuracies well above those of the random encoder; how much of that lift survives
fine-tuning is what `experiments/nsmc.py` measures. Last output line: one JSON object.

    python experiments/linear_probe.py --data_dir ../shared/data/nsmc --vocab vocab8k \\
        --model_config models/mlm8k_15k/config.json [--init_checkpoint models/mlm8k_15k/generator]
"""
import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn.linear_model import LogisticRegression

from electra_ko import architecture, classifier, finetune, modeling, tasks, vocab as vocab_lib


def frozen_encoder(cfg, init_checkpoint=None, seed=1):
    """The encoder of `cfg`, with the checkpoint's weights or a seeded random init."""
    keras.utils.set_random_seed(seed)
    encoder = modeling.ElectraEncoder(architecture.EncoderConfig.from_config(cfg), name="electra")
    encoder.build()
    if init_checkpoint:
        classifier.assign_encoder_weights(encoder, finetune.load_init_checkpoint(init_checkpoint,
                                                                                 cfg))
    return encoder


def pooled_features(encoder, data: classifier.Encoded, batch_size=256):
    """([CLS] states, mean token states over the real tokens), each [examples, hidden]."""

    @tf.function
    def pool(input_ids, input_mask, segment_ids):
        outputs = encoder(input_ids, input_mask, segment_ids)
        mask = tf.cast(input_mask, outputs["sequence_output"].dtype)[..., None]
        mean = tf.reduce_sum(outputs["sequence_output"] * mask, 1) / tf.reduce_sum(mask, 1)
        return outputs["cls_output"], mean

    parts = []
    for start in range(0, len(data), batch_size):
        inputs = [data.features[key][start:start + batch_size]
                  for key in ("input_ids", "input_mask", "segment_ids")]
        parts.append([x.numpy() for x in pool(*inputs)])
    return tuple(np.concatenate(column) for column in zip(*parts))


def probe_accuracy(train_x, train_y, test_x, test_y, c=1.0):
    model = LogisticRegression(C=c, max_iter=2000).fit(train_x, train_y)
    return round(tasks.accuracy(test_y, model.predict(test_x)), 2)


def linear_probe(data_dir, vocab, model_config, init_checkpoint=None, max_train_examples=24000,
                 max_test_examples=None, max_seq_length=64, seed=1):
    started = time.time()
    tokenizer = vocab_lib.load_tokenizer(vocab)
    cfg = finetune.resolve_config(model_config=model_config, task="nsmc")
    cfg = cfg.replace(vocab_size=tokenizer.vocab_size, max_seq_length=max_seq_length)
    spec = tasks.get_task("nsmc")
    splits = tasks.load_splits(spec, data_dir, max_train_examples, max_test_examples)
    encoder = frozen_encoder(cfg, init_checkpoint, seed)
    train = classifier.encode_split(tokenizer, splits.train, max_seq_length)
    test = classifier.encode_split(tokenizer, splits.test, max_seq_length)
    train_features, test_features = pooled_features(encoder, train), pooled_features(encoder, test)
    accuracies = {name: probe_accuracy(train_features[i], train.labels, test_features[i],
                                       test.labels)
                  for i, name in enumerate(("cls_accuracy", "mean_accuracy"))}
    return {"init_checkpoint": init_checkpoint or "random", "train_examples": len(train),
            "test_examples": len(test), **accuracies,
            "seconds": round(time.time() - started, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", required=True, help="NSMC folder (ratings_train.txt, "
                        "ratings_test.txt)")
    parser.add_argument("--vocab", required=True, help="vocab.txt or its folder")
    parser.add_argument("--model_config", required=True,
                        help="config.json of the pretraining run (sizes of the encoder)")
    parser.add_argument("--init_checkpoint", help="absent: a random encoder")
    parser.add_argument("--max_train_examples", type=int, default=24000)
    parser.add_argument("--max_test_examples", type=int)
    parser.add_argument("--max_seq_length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    result = linear_probe(args.data_dir, args.vocab, args.model_config, args.init_checkpoint,
                          args.max_train_examples, args.max_test_examples,
                          args.max_seq_length, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
