"""Golden numbers: what refactoring must not change.

Pinned from the code before the house moves (issue 21): a tiny ELECTRA's losses for its
first three training steps, the bytes of a Hugging Face export of fixed weights, and a
fine-tuning run's first-epoch loss. Losses get a relative tolerance of 1e-4, because float
sums may round differently on another CPU; the export is bit-exact, because its weights are
set from a formula, not computed.
"""
import hashlib

import numpy as np
import pytest
import tensorflow as tf

from electra_ko import checkpoints, export, finetune, modeling, pretrain
from test_finetune import POSITIVE, NEGATIVE, FILLER, SPECIALS, parse_flags, write_nsmc
from test_pretrain import _cfg, corpus_dir  # noqa: F401 (a fixture)

GOLDEN_PRETRAINING_LOSSES = {  # step -> (loss, mlm_loss, disc_loss)
    1: (38.30605, 4.176036, 0.6826001),
    2: (38.24337, 4.161143, 0.6816444),
    3: (37.51995, 4.126659, 0.6678659),
}
GOLDEN_EXPORT_SHA256 = {
    "discriminator/model.safetensors":
        "d440cea3587b635b61e1624a48cca9a6604f18827442864dd06de4c749179f42",
    "discriminator/config.json":
        "22caafcd04f5789a32f78bf514d4b089abcd38191df755bcd601d2b9df105ce0",
    "generator/model.safetensors":
        "28a50411bc7abdf46e65dade6231e6ebb1862dd0b7b772cfdf130139d6502857",
    "generator/config.json":
        "a12f14ff4cc191ed1eb94dce62f7fcb5aac1458e431e6cec64288b0be368dfeb",
}
GOLDEN_FINETUNE_FIRST_EPOCH_LOSS = 0.6976344


def scalar_summaries(log_dir):
    """{(step, tag): value} of every scalar in the TensorBoard event files under log_dir."""
    values = {}
    for path in tf.io.gfile.glob(f"{log_dir}/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values[(event.step, value.tag)] = float(tf.make_ndarray(value.tensor))
    return values


def test_first_three_pretraining_steps_keep_their_losses(corpus_dir, tmp_path):  # noqa: F811
    cfg = _cfg(corpus_dir, tmp_path, num_train_steps=3, iterations_per_loop=1)
    assert pretrain.run(cfg, deterministic=True)["step"] == 3
    summaries = scalar_summaries(tmp_path / "train")
    losses = {step: tuple(summaries[(step, tag)] for tag in ("loss", "mlm_loss", "disc_loss"))
              for step in (1, 2, 3)}
    print("pretraining losses", losses)
    for step, expected in GOLDEN_PRETRAINING_LOSSES.items():
        assert losses[step] == pytest.approx(expected, rel=1e-4), step


def formula_weights(model):
    """Set every weight of `model` from its index and shape alone: the same bits anywhere."""
    for index, variable in enumerate(model.weights):
        size = int(np.prod(variable.shape))
        values = np.sin(np.arange(size, dtype=np.float64) * 0.37 + index) * 0.05
        variable.assign(values.reshape(variable.shape).astype(variable.dtype))


def test_export_of_fixed_weights_keeps_its_bytes(corpus_dir, tmp_path):  # noqa: F811
    cfg, _ = pretrain.with_vocab(_cfg(corpus_dir, tmp_path / "unused"))
    model = modeling.ElectraPretrainer.from_project_config(cfg)
    formula_weights(model)
    export.export(checkpoints.pretrainer_towers(model), cfg.vocab_file, "hf", str(tmp_path / "hf"),
                  cfg.max_seq_length)
    digests = {name: hashlib.sha256((tmp_path / "hf" / name).read_bytes()).hexdigest()
               for name in GOLDEN_EXPORT_SHA256}
    print("export sha256", digests)
    assert digests == GOLDEN_EXPORT_SHA256


def test_fine_tuning_keeps_its_first_epoch_loss(tmp_path):
    write_nsmc(tmp_path / "ratings_train.txt", 200, seed=1)
    write_nsmc(tmp_path / "ratings_test.txt", 40, seed=2)
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIALS + POSITIVE + NEGATIVE + FILLER) + "\n",
                                        encoding="utf-8")
    fv = parse_flags(["--task", "nsmc", "--data_dir", str(tmp_path),
                      "--vocab", str(tmp_path / "vocab.txt"), "--output_dir", str(tmp_path / "out"),
                      "--set", "model_size=debug", "--epochs", "1", "--batch_size", "8",
                      "--learning_rate", "3e-3", "--max_seq_length", "16"])
    results = finetune.run_from_flags(fv, command="golden")
    loss = results["seeds"][0]["epochs"][0]["train_loss"]
    print("fine-tuning first-epoch loss", loss)
    assert loss == pytest.approx(GOLDEN_FINETUNE_FIRST_EPOCH_LOSS, rel=1e-4)
