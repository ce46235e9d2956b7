"""Fine-tuning (electra_ko.finetune and electra_ko.classifier): layer-wise decay, optimizer,
batching, learning, collapse check, init checkpoints, seeds, outputs, errors, a real run."""
import hashlib
import json
import os
import random

import numpy as np
import pytest
from absl import flags

from electra_ko import architecture, checkpoints, classifier, finetune, modeling, tasks, vocab
from test_checkpoints import tf1_variables, write_tf1_checkpoint
from test_storage import plant_temporaries

POSITIVE, NEGATIVE, FILLER = ["좋다", "최고", "감동"], ["별로", "최악", "지루"], ["영화", "배우", "연기"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_config(**changes):
    values = dict(vocab_size=20, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=32, embedding_size=8, max_position_embeddings=32)
    return architecture.EncoderConfig(**dict(values, **changes))


def write_nsmc(path, n, seed):
    """Reviews of one sentiment word and one filler word: learnable from the word alone."""
    rng = random.Random(seed)
    lines = ["id\tdocument\tlabel"]
    for i in range(n):
        label = i % 2
        words = [rng.choice(POSITIVE if label else NEGATIVE), rng.choice(FILLER)]
        rng.shuffle(words)
        lines.append(f"{i}\t{' '.join(words)}\t{label}")
    lines.append(f"{n}\t\t1")  # an empty review: skipped and counted
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_flags(argv):
    fv = flags.FlagValues()
    finetune.define_flags(fv)
    fv(["finetune"] + argv)
    return fv


@pytest.fixture(scope="module")
def nsmc_run(tmp_path_factory):
    """One real fine-tuning run (1 epoch, debug-size random model) through the CLI flags."""
    root = tmp_path_factory.mktemp("nsmc")
    write_nsmc(root / "ratings_train.txt", 800, seed=1)
    write_nsmc(root / "ratings_test.txt", 60, seed=2)
    (root / "vocab.txt").write_text("\n".join(SPECIALS + POSITIVE + NEGATIVE + FILLER) + "\n",
                                    encoding="utf-8")
    fv = parse_flags(["--task", "nsmc", "--data_dir", str(root), "--vocab", str(root / "vocab.txt"),
                      "--output_dir", str(root / "out"), "--set", "model_size=debug",
                      "--epochs", "1", "--batch_size", "8", "--learning_rate", "3e-3",
                      "--max_seq_length", "16", "--max_train_examples", "0"])  # 0 = all
    return root, finetune.run_from_flags(fv, command="test")


def test_one_epoch_learns_a_trivial_pattern(nsmc_run):
    _, results = nsmc_run
    assert results["final"]["eval"]["accuracy"] >= 90.0
    assert results["final"]["test"]["accuracy"] >= 90.0


def test_results_json_records_run(nsmc_run):
    root, results = nsmc_run
    saved = json.loads((root / "out" / "results.json").read_text(encoding="utf-8"))
    assert saved["task"] == "nsmc" and saved["main_metric"] == "accuracy"
    assert saved["examples"] == {"train": 800, "eval": 60, "test": 60}
    assert saved["skipped_empty"] == {"train": 1, "eval": 1, "test": 1}
    assert saved["init_checkpoint"] == {"path": None, "random_init": True}
    assert [e["epoch"] for e in saved["seeds"][0]["epochs"]] == [1]
    assert saved["seeds"][0]["epochs"][0]["steps"] == 100
    assert saved["config"]["learning_rate"] == pytest.approx(3e-3)
    assert saved["config"]["layerwise_lr_decay"] == 1.0  # off from random init
    assert saved["config"]["hidden_size"] == 32  # the debug preset
    weights = root / "out" / "model" / "model.safetensors"
    assert saved["model"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert saved["vocab"]["size"] == 14 and saved["wall_seconds"] > 0
    assert saved["train_examples_per_second"] > 0


def test_predictions_and_model_dir(nsmc_run):
    root, _ = nsmc_run
    rows = (root / "out" / "predictions.tsv").read_text(encoding="utf-8").splitlines()
    assert rows[0].split("\t") == ["line", "prediction", "probability", "label", "document"]
    assert len(rows) == 61
    assert sum(r.split("\t")[1] == r.split("\t")[3] for r in rows[1:]) >= 54
    hf_config = json.loads((root / "out" / "model" / "config.json").read_text(encoding="utf-8"))
    assert hf_config["id2label"] == {"0": "0", "1": "1"}
    assert hf_config["electra_ko"]["task"] == "nsmc"
    assert hf_config["electra_ko"]["max_seq_length"] == 16
    assert (root / "out" / "model" / "vocab.txt").exists()


def test_model_dir_predicts_in_transformers_as_in_predictions_tsv(nsmc_run):
    """The fine-tuned model/ is a transformers directory: its own tokenizer and
    ElectraForSequenceClassification reproduce predictions.tsv."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    root, _ = nsmc_run
    model_dir = root / "out" / "model"
    rows = [r.split("\t") for r in
            (root / "out" / "predictions.tsv").read_text(encoding="utf-8").splitlines()[1:]]
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.ElectraForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(**tokenizer([r[4] for r in rows], padding=True, return_tensors="pt")).logits
    probabilities = torch.softmax(logits, -1).numpy()
    assert [model.config.id2label[i] for i in probabilities.argmax(-1)] == [r[1] for r in rows]
    np.testing.assert_allclose(probabilities.max(-1), [float(r[2]) for r in rows], atol=2e-4)


def test_saved_model_reloads_as_init_checkpoint(nsmc_run, tmp_path):
    root, _ = nsmc_run
    init = finetune.load_init_checkpoint(str(root / "out" / "model"), finetune.resolve_config())
    assert init.sizes["hidden_size"] == 32 and init.sizes["vocab_size"] == 14
    assert init.sizes["num_attention_heads"] == 2  # from config.json, not the "small" preset's 4
    weights = root / "out" / "model" / "model.safetensors"
    assert init.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    model = classifier.SequenceClassifier(architecture.EncoderConfig(
        vocab_size=14, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, embedding_size=32), 2)
    classifier.assign_encoder_weights(model.electra, init)
    word = model.electra.embeddings.word_embeddings.numpy()
    np.testing.assert_array_equal(word, init.tensors["electra.embeddings.word_embeddings.weight"])


def test_init_checkpoint_errors_name_the_path(tmp_path):
    with pytest.raises(finetune.checkpoints.CheckpointError,
                       match=rf"{tmp_path}: neither a Hugging Face directory .* nor a TF checkpoint"):
        finetune.load_init_checkpoint(str(tmp_path), finetune.resolve_config())


def test_model_config_sizes_the_model_but_not_its_dropout(tmp_path):
    pretraining = tmp_path / "config.json"
    pretraining.write_text(json.dumps({"model_size": "tiny", "hidden_size": 96,
                                       "hidden_dropout_prob": 0.0, "learning_rate": 5.0,
                                       "attention_probs_dropout_prob": 0.0,
                                       "position_embedding_init": "sinusoidal"}))
    cfg = finetune.resolve_config(model_config=str(pretraining))
    assert (cfg.model_size, cfg.hidden_size) == ("tiny", 96)
    assert cfg.position_embedding_init == "sinusoidal"  # a random init starts as its twin did
    assert cfg.hidden_dropout_prob == cfg.attention_probs_dropout_prob == 0.1
    assert cfg.learning_rate != 5.0  # a pretraining key, not architecture


def test_tf1_checkpoint_gives_its_discriminator_and_refuses_a_generator(tmp_path):
    variables = tf1_variables(embedding=16, hidden=32, gen_hidden=8, layers=2, gen_layers=1)
    (tmp_path / "full").mkdir()
    prefix = write_tf1_checkpoint(tmp_path / "full", variables, with_optimizer_state=False)
    cfg = finetune.resolve_config(overrides=["num_attention_heads=4"])
    init = finetune.load_init_checkpoint(str(tmp_path / "full"), cfg)
    assert init.path == prefix
    assert init.sizes["hidden_size"] == 32 and init.sizes["num_hidden_layers"] == 2
    assert init.sizes["num_attention_heads"] == 4  # a TF1 checkpoint does not record it
    np.testing.assert_array_equal(init.tensors["electra.encoder.layer.1.output.dense.weight"],
                                  variables["electra/encoder/layer_1/output/dense/kernel"].T)
    generator_only = {k: v for k, v in variables.items()
                      if not k.startswith(("electra/encoder", "electra/embeddings_project",
                                           "discriminator_predictions"))}
    (tmp_path / "gen").mkdir()
    write_tf1_checkpoint(tmp_path / "gen", generator_only, with_optimizer_state=False)
    with pytest.raises(finetune.FinetuneError, match="holds only a generator"):
        finetune.load_init_checkpoint(str(tmp_path / "gen"), cfg)


def test_vocab_size_mismatch_is_a_clear_error(nsmc_run, tmp_path):
    root, _ = nsmc_run
    (tmp_path / "vocab.txt").write_text("\n".join(SPECIALS + ["하나"]) + "\n", encoding="utf-8")
    fv = parse_flags(["--task", "nsmc", "--data_dir", str(root), "--vocab", str(tmp_path),
                      "--init_checkpoint", str(root / "out" / "model"),
                      "--output_dir", str(tmp_path / "out")])
    with pytest.raises(finetune.FinetuneError, match=r"has 14 word embeddings but --vocab .* has "
                                                     r"6 tokens"):
        finetune.run_from_flags(fv)


def test_collapsed_checkpoint_is_measured_and_flagged(caplog):
    encoder = modeling.ElectraEncoder(tiny_config(), name="electra")
    encoder.build()
    data = classifier.Encoded(dict(zip(("input_ids", "input_mask", "segment_ids", "lengths"),
                                     (np.array([[2, 5, 6, 3], [2, 9, 3, 0]], np.int32),
                                      np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.int32),
                                      np.zeros((2, 4), np.int32), np.array([4, 3])))), None)
    assert classifier.token_state_spread(encoder, data) > 0.3
    # the last LayerNorm's scale at 0: every token comes out as its offset, one vector
    encoder.encoder_layers[-1].output_layer_norm.gamma.assign(np.zeros(16, np.float32))
    encoder.encoder_layers[-1].output_layer_norm.beta.assign(np.linspace(-1, 1, 16))
    assert classifier.token_state_spread(encoder, data) < 1e-6
    tensors = {}
    for tf1_name, variable in encoder.tf1_weights("electra"):
        name, transposed = checkpoints.hf_name(tf1_name)
        tensors[name] = variable.numpy().T if transposed else variable.numpy()
    init = classifier.InitCheckpoint("/models/collapsed", tensors, {}, "")
    cfg = finetune.resolve_config(overrides=["model_size=debug"], vocab_size=20, hidden_size=16,
                                  embedding_size=8, intermediate_size=32,
                                  max_position_embeddings=32, max_seq_length=16)
    with caplog.at_level("WARNING"):
        assert finetune.check_init_spread(cfg, init, data) < 1e-6
    assert "--init_checkpoint /models/collapsed looks COLLAPSED" in caplog.text


def test_checkpoint_architecture_picks_its_size_recipe():
    tiny = {k: architecture.SIZE_PRESETS["tiny"][k] for k in architecture.PRESET_KEYS}
    init = classifier.InitCheckpoint("/models/tiny", {}, dict(tiny, vocab_size=20), "")
    cfg = finetune.resolve_config()  # no model_size given: the default, small
    assert (cfg.model_size, cfg.layerwise_lr_decay) == ("small", pytest.approx(0.8))
    tuned = finetune.recipe_for_checkpoint(cfg.replace(**tiny), init)
    assert (tuned.model_size, tuned.layerwise_lr_decay) == ("tiny", 1.0)
    assert (tuned.learning_rate, tuned.hidden_size) == (pytest.approx(3e-4), 128)
    # a given key, or a given model_size, wins over the checkpoint's size
    given = finetune.resolve_config(overrides=["layerwise_lr_decay=0.9"]).replace(**tiny)
    assert finetune.recipe_for_checkpoint(given, init).layerwise_lr_decay == pytest.approx(0.9)
    sized = finetune.resolve_config(overrides=["model_size=base"]).replace(**tiny)
    assert finetune.recipe_for_checkpoint(sized, init).learning_rate == pytest.approx(1e-4)
    # a size key given through model_hparam_overrides stays as given
    hparams = finetune.resolve_config(overrides=['model_hparam_overrides={"hidden_size": 96}'])
    assert hparams.with_model_size("tiny").hidden_size == 96
    # an architecture that is none of the presets keeps the configured size
    odd = classifier.InitCheckpoint("/models/odd", {}, dict(tiny, hidden_size=96), "")
    assert finetune.recipe_for_checkpoint(cfg, odd).model_size == "small"


def test_results_config_drops_the_random_start_a_checkpoint_replaces():
    cfg = finetune.resolve_config(overrides=["position_embedding_init=sinusoidal"])
    init = classifier.InitCheckpoint("/models/tiny", {}, {}, "")
    assert finetune.recorded_config(cfg, None)["position_embedding_init"] == "sinusoidal"
    from_checkpoint = finetune.recorded_config(cfg, init)
    assert "position_embedding_init" not in from_checkpoint
    assert from_checkpoint["learning_rate"] == cfg.learning_rate


def test_seed_aggregation_mean_sample_std_best():
    runs = [{"eval": {"accuracy": 80.0}}, {"eval": {"accuracy": 84.0}}, {"eval": {"accuracy": 85.0}}]
    summary = finetune.aggregate(runs, "eval")["accuracy"]
    assert summary["mean"] == pytest.approx(83.0)
    assert summary["std"] == pytest.approx(np.std([80, 84, 85], ddof=1))
    assert summary["best"] == 85.0 and summary["values"] == [80.0, 84.0, 85.0]
    assert finetune.aggregate(runs[:1], "eval")["accuracy"]["std"] == 0.0
    assert finetune.aggregate(runs, "test") == {}


def test_flag_errors_are_named(tmp_path):
    with pytest.raises(finetune.FinetuneError, match="--seeds must be comma-separated integers"):
        finetune.parse_seeds(["1", "two"])
    assert finetune.example_limit("max_train_examples", 0) is None  # all
    assert finetune.example_limit("max_train_examples", 5) == 5
    with pytest.raises(finetune.FinetuneError, match=r"--max_eval_examples must be >= 0 \(0 = all"):
        finetune.example_limit("max_eval_examples", -1)
    fv = parse_flags(["--task", "custom", "--label_column", "y"])
    with pytest.raises(tasks.TaskError, match="--text_a_column"):
        finetune.run_from_flags(fv)
    fv = parse_flags(["--task", "nsmc", "--vocab", str(tmp_path)])
    with pytest.raises(finetune.FinetuneError, match="--output_dir is required"):
        finetune.run_from_flags(fv)


@pytest.mark.parametrize("electra_objective", [False, True])
def test_plain_masked_lm_is_fine_tunable_but_an_electra_generator_is_not(tmp_path,
                                                                       electra_objective):
    from electra_ko import pretrain
    (tmp_path / "vocab.txt").write_text("\n".join(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"단어{i}" for i in range(15)]) + "\n",
        encoding="utf-8")
    disc = tiny_config()
    model = modeling.ElectraPretrainer(disc, disc.generator(0.5), electra_objective=electra_objective)
    pretrain.export_towers(model, str(tmp_path / "vocab.txt"), str(tmp_path / "model"), 16)
    generator_dir = str(tmp_path / "model" / "generator")
    if electra_objective:
        with pytest.raises(finetune.FinetuneError, match="holds only a generator"):
            finetune.load_init_checkpoint(generator_dir, finetune.resolve_config())
        return
    init = finetune.load_init_checkpoint(generator_dir, finetune.resolve_config())
    assert init.sizes["hidden_size"] == 16  # the masked LM is discriminator-sized
    np.testing.assert_array_equal(init.tensors["electra.encoder.layer.1.output.dense.weight"],
                                  model.discriminator.encoder_layers[1].output_dense.kernel.numpy().T)


def test_outputs_data_and_init_checkpoint_on_gcs(nsmc_run, gcs_emulator, tmp_path, monkeypatch):
    """A TPU VM's fine-tuning reads its task files and checkpoint from a bucket and writes its
    outputs there (one seed, then several); the model exports from there, to there."""
    import types
    import uuid

    from electra_ko import export, storage
    from test_storage import assert_nothing_named_gs
    root, _ = nsmc_run
    base = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    for name in ("ratings_train.txt", "ratings_test.txt"):
        storage.copy(str(root / name), f"{base}/data/{name}")
    monkeypatch.chdir(tmp_path)
    first = finetune.run_from_flags(parse_flags(
        ["--task", "nsmc", "--data_dir", str(root), "--init_checkpoint", str(root / "out" / "model"),
         "--output_dir", f"{base}/first", "--epochs", "1", "--batch_size", "8",
         "--max_seq_length", "16", "--max_train_examples", "64"]))
    assert first["model"]["path"].startswith(f"{base}/first/model/")
    assert storage.exists(f"{base}/first/{finetune.PREDICTIONS_FILE}")
    second = finetune.run_from_flags(parse_flags(
        ["--task", "nsmc", "--data_dir", f"{base}/data", "--init_checkpoint", f"{base}/first/model",
         "--output_dir", f"{base}/second", "--epochs", "1", "--batch_size", "8",
         "--max_seq_length", "16", "--max_train_examples", "64", "--seeds", "1,2"]))
    recorded = storage.read_json(f"{base}/second/{finetune.RESULTS_FILE}")
    assert recorded["init_checkpoint"]["sha256"] == first["model"]["sha256"]
    assert recorded["files"]["train"] == f"{base}/data/ratings_train.txt"
    assert recorded["final"] == second["final"]
    for seed in (1, 2):
        assert storage.read_json(f"{base}/second/seed_{seed}/{finetune.RESULTS_FILE}")["seed"] == seed
        assert storage.exists(f"{base}/second/seed_{seed}/{finetune.PREDICTIONS_FILE}")
    served = f"{base}/served"
    export_flags = types.SimpleNamespace(
        model_dir=f"{base}/second", init_checkpoint=None, output_dir=served, format="saved_model",
        vocab=None, config=None, set=[], max_seq_length=None, checkpoint_step=None)
    assert export.run(export_flags) == [served]
    assert storage.exists(f"{served}/saved_model.pb")
    assert storage.read_bytes(f"{served}/{export.ASSETS_EXTRA}/vocab.txt") == \
        (root / "vocab.txt").read_bytes()
    assert_nothing_named_gs(tmp_path, os.getcwd(), root)


def test_leaderboard_reads_tasks_from_and_writes_its_table_to_a_bucket(nsmc_run, gcs_emulator,
                                                                        tmp_path, monkeypatch):
    import uuid

    from electra_ko import leaderboard, storage
    from test_storage import assert_nothing_named_gs
    root, _ = nsmc_run
    base = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    for name in ("ratings_train.txt", "ratings_test.txt"):
        storage.write_text(f"{base}/data/nsmc/{name}", (root / name).read_text(encoding="utf-8"))
    storage.upload_dir(str(root / "out" / "model"), f"{base}/models/model")
    monkeypatch.chdir(tmp_path)
    rows = leaderboard.run_leaderboard(["nsmc"], f"{base}/data", [f"{base}/models/model"],
                                       f"{base}/bench", epochs=1, batch_size=8, max_seq_length=16,
                                       max_train_examples=64)
    assert list(rows) == ["models/model"]
    assert json.loads(storage.read_text(f"{base}/bench/{leaderboard.JSON_FILE}")) == rows
    assert storage.read_text(f"{base}/bench/{leaderboard.TABLE_FILE}") == \
        leaderboard.format_table(rows, ["nsmc"])
    results = storage.read_json(f"{base}/bench/models_model/nsmc/{finetune.RESULTS_FILE}")
    assert results["vocab"]["path"] == f"{base}/models/model"  # the checkpoint's own vocab
    assert os.listdir(tmp_path) == []
    assert_nothing_named_gs(tmp_path, os.getcwd(), root)


def test_missing_init_checkpoint_is_reported_before_anything_else(tmp_path):
    fv = parse_flags(["--task", "nsmc", "--data_dir", str(tmp_path),
                      "--init_checkpoint", str(tmp_path / "no_such_model"),
                      "--output_dir", str(tmp_path / "out")])
    with pytest.raises(finetune.FinetuneError, match=r"--init_checkpoint .*no_such_model not found"):
        finetune.run_from_flags(fv)


def test_staging_folders_of_a_killed_run_are_removed_at_start(tmp_path, caplog):
    out = tmp_path / "out"
    plant_temporaries(str(out), [".staging-k1ll3d00/", ".staging/", ".keep"])
    fv = parse_flags(["--task", "nsmc", "--data_dir", str(tmp_path), "--output_dir", str(out),
                      "--vocab", str(tmp_path / "absent.txt")])
    with pytest.raises(vocab.VocabError):  # no vocab: stops right after start-up
        finetune.run_from_flags(fv)
    assert sorted(os.listdir(out)) == [".keep", ".staging"]
    assert f"removed what killed runs left in {out}: .staging-k1ll3d00" in caplog.text
