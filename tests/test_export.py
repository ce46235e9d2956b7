"""Tests for electra_ko.export: Hugging Face export/import parity and the serving SavedModel."""
import os
import random
import types
import uuid

import numpy as np
import pytest

from electra_ko import architecture, checkpoints, export, modeling, storage, tasks, vocab
from test_storage import assert_nothing_named_gs, files_under, plant_temporaries

torch = pytest.importorskip("torch", reason="Hugging Face parity tests need torch (extra 'hf')")
transformers = pytest.importorskip(
    "transformers", reason="Hugging Face parity tests need transformers (extra 'hf')")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SENTENCES = ["이 영화 정말 재미있어요!! 10점 만점에 10점", "배우들 연기가 너무 어색했다 ㅠㅠ",
             "iPhone으로 찍은 예고편보다 못함😀", "감독 다음 작품도 기대됩니다.",
             "ㅋㅋㅋㅋㅋ 시간 아까움"]
MAX_SEQ_LENGTH = 24


def tiny_config(hidden=32, embedding=16, layers=2, heads=2, vocab_size=None):
    return architecture.EncoderConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * hidden, embedding_size=embedding,
        max_position_embeddings=MAX_SEQ_LENGTH)


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    chars = sorted({c for s in SENTENCES for c in s if not c.isspace()})
    tokens = SPECIALS + chars + ["##" + c for c in chars] + ["영화", "정말", "재미"]
    directory = tmp_path_factory.mktemp("vocab")
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def features(vocab_dir):
    encoded = tasks.encode(vocab.load_tokenizer(vocab_dir), SENTENCES, None, MAX_SEQ_LENGTH)
    return {k: encoded[k] for k in ("input_ids", "input_mask", "segment_ids")}


def randomize(model, seed=0):
    """Weights far from the 0.02-scale init, so layout or activation slips show in outputs."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        scale = 0.1 if len(variable.shape) == 2 else 0.5
        offset = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(offset + scale * rng.standard_normal(variable.shape).astype(np.float32))
    return model


def hf_outputs(model_dir, architecture, features):
    model = getattr(transformers, architecture).from_pretrained(model_dir).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(features["input_ids"], dtype=torch.long),
                    attention_mask=torch.tensor(features["input_mask"], dtype=torch.long),
                    token_type_ids=torch.tensor(features["segment_ids"], dtype=torch.long))
    return out.logits.numpy()


@pytest.mark.parametrize("kind,architecture", [("discriminator", "ElectraForPreTraining"),
                                               ("generator", "ElectraForMaskedLM")])
def test_exported_model_predicts_like_transformers(tmp_path, vocab_dir, features, kind,
                                                   architecture):
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(checkpoints.build_model(kind, config))
    out = export.write_huggingface(checkpoints.tower_from_model(kind, model), vocab_dir, tmp_path / kind)
    ours = model(features).numpy()
    theirs = hf_outputs(out, architecture, features)
    assert ours.shape == theirs.shape
    assert np.abs(ours).max() > 1.0  # outputs large enough for the tolerance to mean something
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.mark.parametrize("kind", ["discriminator", "generator"])
def test_round_trip_through_huggingface_is_bit_identical(tmp_path, vocab_dir, kind):
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(checkpoints.build_model(kind, config), seed=1)
    export.write_huggingface(checkpoints.tower_from_model(kind, model), vocab_dir, tmp_path)
    tower = checkpoints.read_hf_tower(tmp_path)
    assert (tower.kind, tower.config) == (kind, config)
    reloaded = checkpoints.model_from_tower(tower)
    for before, after in zip(model.weights, reloaded.weights):
        assert before.path.split("/", 1)[1] == after.path.split("/", 1)[1]
        np.testing.assert_array_equal(before.numpy(), after.numpy())


@pytest.mark.parametrize("architecture,kind,embedding", [
    ("ElectraForPreTraining", "discriminator", 16), ("ElectraForMaskedLM", "generator", 16),
    ("ElectraForPreTraining", "discriminator", 32)])
def test_model_made_by_transformers_imports_with_parity(tmp_path, vocab_dir, features,
                                                        architecture, kind, embedding):
    size = vocab.load_tokenizer(vocab_dir).vocab_size
    hf_model = getattr(transformers, architecture)(transformers.ElectraConfig(
        vocab_size=size, embedding_size=embedding, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=MAX_SEQ_LENGTH,
        initializer_range=0.3))
    hf_model.save_pretrained(tmp_path)
    tower = checkpoints.read_hf_tower(tmp_path)
    assert tower.kind == kind
    ours = checkpoints.model_from_tower(tower)(features).numpy()
    np.testing.assert_allclose(ours, hf_outputs(tmp_path, architecture, features), atol=1e-4)


def test_exported_tokenizer_matches_training_tokenizer(tmp_path, vocab_dir):
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = modeling.DiscriminatorModel(config)
    export.write_huggingface(checkpoints.tower_from_model("discriminator", model), vocab_dir, tmp_path)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    ours = vocab.load_tokenizer(vocab_dir)
    long_word = "영" * 150  # transformers' own converter would cut words at 100 chars
    for text in SENTENCES + [long_word]:
        expected = [ours.special_ids["cls"], *ours.encode_batch([text])[0], ours.special_ids["sep"]]
        assert hf_tokenizer(text)["input_ids"] == expected


# Parity texts for SentencePiece exports: runs of spaces, leading and trailing space, digits,
# punctuation, Latin words, full-width forms NFKC folds, characters the vocab lacks (one and
# several in a row), and nothing at all.
SPM_TEXTS = SENTENCES + [
    "  영화가   정말  재미있어요!!  ", "배우들 연기(10점)가 3.5배 어색했다...ㅠㅠ",
    "iPhone 15로 찍은 예고편, 2024년 개봉?", "ＥＬＥＣＴＲＡ　모델 １２３점", "감독 作品 鬱鬱 기대됩니다😀😀",
    "", "   "]


# Vocab sizes: the most a unigram model learns from this corpus; for BPE, enough merges
# that their order matters.
SPM_VOCAB_SIZES = {"unigram": 100, "bpe": 200}


def _spm_vocab(directory, model_type):
    """A SentencePiece vocab trained on shuffled words of SENTENCES."""
    rng = random.Random(0)
    words = [word for text in SENTENCES for word in text.split()] + ["iPhone", "ELECTRA", "2024"]
    corpus = directory / "corpus.txt"
    corpus.write_text("".join(" ".join(rng.sample(words, 6)) + "\n" for _ in range(300)),
                      encoding="utf-8")
    vocab.build_vocab([str(corpus)], str(directory / "vocab"), tokenizer="sentencepiece",
                      vocab_size=SPM_VOCAB_SIZES[model_type], num_unused=3, heldout_lines=0,
                      spm_model_type=model_type)
    return directory / "vocab"


def _assert_hf_tokenizer_matches(vocab_path, texts):
    """An export with this vocab loads in AutoTokenizer, which gives our ids in [CLS] .. [SEP]."""
    ours = vocab.load_tokenizer(vocab_path)
    config = tiny_config(vocab_size=ours.vocab_size)
    out = export.write_huggingface(checkpoints.tower_from_model(
        "discriminator", modeling.DiscriminatorModel(config)), vocab_path, vocab_path.parent / "hf")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    for text, ids in zip(texts, ours.encode_batch(texts)):
        expected = [ours.special_ids["cls"], *ids, ours.special_ids["sep"]]
        assert hf_tokenizer(text)["input_ids"] == expected, text
    return hf_tokenizer


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_exported_sentencepiece_tokenizer_matches_training_tokenizer(tmp_path, model_type):
    vocab_path = _spm_vocab(tmp_path, model_type)
    hf_tokenizer = _assert_hf_tokenizer_matches(vocab_path, SPM_TEXTS)
    ours = vocab.load_tokenizer(vocab_path)
    assert any(ours.special_ids["unk"] in ids for ids in ours.encode_batch(SPM_TEXTS))
    assert hf_tokenizer.decode(hf_tokenizer(SENTENCES[3])["input_ids"],
                               skip_special_tokens=True) == SENTENCES[3]


@pytest.mark.parametrize("add_dummy_prefix,remove_extra_whitespaces",
                         [(False, True), (True, False), (False, False)])
def test_exported_sentencepiece_tokenizer_follows_the_models_whitespace_settings(
        tmp_path, add_dummy_prefix, remove_extra_whitespaces):
    from sentencepiece import sentencepiece_model_pb2

    vocab_path = _spm_vocab(tmp_path, "unigram")
    model = sentencepiece_model_pb2.ModelProto.FromString((vocab_path / "spm.model").read_bytes())
    model.normalizer_spec.add_dummy_prefix = add_dummy_prefix
    model.normalizer_spec.remove_extra_whitespaces = remove_extra_whitespaces
    (vocab_path / "spm.model").write_bytes(model.SerializeToString())
    _assert_hf_tokenizer_matches(vocab_path, SPM_TEXTS)


def test_tensor_names_that_do_not_fit_are_listed(vocab_dir):
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    tower = checkpoints.tower_from_model("discriminator", modeling.DiscriminatorModel(config))
    del tower.tensors["electra.encoder.layer.1.output.dense.bias"]
    tower.tensors["electra.pooler.dense.weight"] = np.zeros((32, 32), np.float32)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"(?s)missing \(1\): electra.encoder.layer.1.output.dense.bias.*"
                             r"unexpected \(1\): electra.pooler.dense.weight"):
        checkpoints.model_from_tower(tower)


def test_classifier_exports_as_sequence_classification_with_labels(tmp_path, vocab_dir, features):
    labels = ("부정", "긍정")
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(checkpoints.build_model("classifier", config, labels), seed=2)
    out = export.write_huggingface(checkpoints.tower_from_model("classifier", model, labels),
                                   vocab_dir, tmp_path)
    hf_model = transformers.ElectraForSequenceClassification.from_pretrained(out)
    assert hf_model.config.id2label == {0: "부정", 1: "긍정"}
    ours = model(features).numpy()
    assert np.abs(ours - hf_outputs(out, "ElectraForSequenceClassification", features)).max() < 1e-4
    assert checkpoints.read_hf_tower(out).labels == labels


def test_pytorch_bin_folder_imports_with_parity(tmp_path, vocab_dir, features):
    size = vocab.load_tokenizer(vocab_dir).vocab_size
    hf_model = transformers.ElectraForPreTraining(transformers.ElectraConfig(
        vocab_size=size, embedding_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=MAX_SEQ_LENGTH,
        initializer_range=0.3))
    hf_model.config.save_pretrained(tmp_path)  # the older layout: a pickled state dict
    torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
    ours = checkpoints.model_from_tower(checkpoints.read_hf_tower(tmp_path))(features).numpy()
    with torch.no_grad():
        theirs = hf_model.eval()(**{name: torch.tensor(features[key], dtype=torch.long)
                                    for name, key in (("input_ids", "input_ids"),
                                                      ("attention_mask", "input_mask"),
                                                      ("token_type_ids", "segment_ids"))}).logits
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pytorch_bin_holding_code_is_refused(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"model_type": "electra"}', encoding="utf-8")
    torch.save({"payload": _RunsCodeWhenUnpickled()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(checkpoints.CheckpointError, match="weights_only=True"):
        checkpoints.read_hf_tower(tmp_path)
    assert "this must never run" not in capsys.readouterr().out


def _exported_discriminator(vocab_dir, folder, seed):
    """A randomized discriminator written as a Hugging Face folder; returns the folder."""
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(checkpoints.build_model("discriminator", config), seed=seed)
    return export.write_huggingface(checkpoints.tower_from_model("discriminator", model), vocab_dir,
                                    folder)


def _assert_same_tower(path, expected_path):
    [tower], [expected] = (checkpoints.open_checkpoint(p).towers for p in (path, expected_path))
    assert (tower.kind, tower.config) == (expected.kind, expected.config)
    assert tower.tensors.keys() == expected.tensors.keys()
    for name in tower.tensors:
        np.testing.assert_array_equal(tower.tensors[name], expected.tensors[name], err_msg=name)


def _flags(**values):
    """The export CLI's flags: these values, the others at their defaults."""
    defaults = dict(model_dir=None, init_checkpoint=None, output_dir=None, format="huggingface",
                    vocab=None, config=None, set=[], max_seq_length=None, checkpoint_step=None)
    return types.SimpleNamespace(**{**defaults, **values})


def test_init_checkpoint_on_gcs_reads_like_the_local_folder(tmp_path, vocab_dir, gcs_emulator,
                                                            monkeypatch):
    local = _exported_discriminator(vocab_dir, tmp_path / "hf", seed=2)
    remote = f"gs://{gcs_emulator}/{uuid.uuid4().hex}/discriminator"
    for file in sorted(p for p in (tmp_path / "hf").iterdir() if p.is_file()):
        with storage.atomic_writer(storage.join(remote, file.name), binary=True) as f:
            f.write(file.read_bytes())
    monkeypatch.chdir(tmp_path)
    _assert_same_tower(remote, str(local))
    assert_nothing_named_gs(tmp_path, os.getcwd())


def test_export_to_gcs_writes_the_bucket_and_nothing_local(tmp_path, vocab_dir, gcs_emulator,
                                                           monkeypatch):
    source = _exported_discriminator(vocab_dir, tmp_path / "source", seed=3)
    target = f"gs://{gcs_emulator}/{uuid.uuid4().hex}/export"
    monkeypatch.chdir(tmp_path)
    assert export.run(_flags(model_dir=str(source), output_dir=target)) == [target]
    uploaded = sorted(p.rsplit("/", 1)[1] for p in storage.glob(target + "/*"))
    assert uploaded == sorted(p.name for p in source.iterdir())
    _assert_same_tower(target, str(source))
    assert_nothing_named_gs(tmp_path, os.getcwd())


def test_gdes_discriminator_exports_with_its_deltas_folded_in(tmp_path, vocab_dir, features):
    """A gdes pretrainer's discriminator leaves as a standard ElectraForPreTraining: its
    tables are shared + delta, with transformers' logits, and read back bit for bit."""
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(modeling.ElectraPretrainer(config, config.generator(0.5),
                                                 embedding_sharing="gdes"), seed=3)
    tower = checkpoints.tower_from_pretrainer(model, "discriminator")
    word = "electra.embeddings.word_embeddings.weight"
    np.testing.assert_array_equal(tower.tensors[word], model.embeddings.word_embeddings.numpy()
                                  + model.embedding_deltas.deltas[0].numpy())
    out = export.write_huggingface(tower, vocab_dir, tmp_path)
    ours = model.discriminator_logits(features["input_ids"], features["input_mask"],
                                      features["segment_ids"]).numpy()
    assert np.std(ours) > 0.01  # logits that differ enough for the tolerance to mean something
    assert np.abs(ours - hf_outputs(out, "ElectraForPreTraining", features)).max() < 1e-4
    reread = checkpoints.read_hf_tower(out)
    assert reread.tensors.keys() == tower.tensors.keys()
    for name, value in tower.tensors.items():
        np.testing.assert_array_equal(reread.tensors[name], value, err_msg=name)
    generator = checkpoints.tower_from_pretrainer(model, "generator")
    np.testing.assert_array_equal(generator.tensors[word], model.embeddings.word_embeddings.numpy())


@pytest.mark.parametrize("sharing", ["tied", "gdes"])
def test_tf1_export_names_a_pair_as_google_research_does(tmp_path, vocab_dir, features, sharing):
    """--format tf1 writes the names google-research/electra saves (a gdes pair is untied there:
    the generator keeps the shared tables under generator/embeddings, the discriminator's hold
    shared + delta) and reads back bit for bit, with the discriminator's logits."""
    import tensorflow as tf

    from test_checkpoints import tf1_variables

    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    model = randomize(modeling.ElectraPretrainer(config, config.generator(0.5),
                                                 embedding_sharing=sharing), seed=5)
    towers = checkpoints.pretrainer_towers(model)
    export.write_tf1(towers, vocab_dir, str(tmp_path))
    location = checkpoints.locate(str(tmp_path))
    assert (location.format, location.vocab()) == (checkpoints.TF1, str(tmp_path))
    expected = set(tf1_variables(embedding=16, hidden=32, gen_hidden=16, layers=2, gen_layers=2))
    if sharing == "gdes":
        expected |= {n.replace("electra/", "generator/", 1) for n in expected
                     if n.startswith("electra/embeddings/")}
    assert {name for name, _ in tf.train.list_variables(location.path)} == expected
    reread = checkpoints.read_tf1_towers(location.path, num_attention_heads=2)
    for tower, back in zip(towers, reread):
        assert (back.kind, back.tensors.keys()) == (tower.kind, tower.tensors.keys())
        for name, value in tower.tensors.items():
            np.testing.assert_array_equal(back.tensors[name], value, err_msg=name)
    ours = model.discriminator_logits(features["input_ids"], features["input_mask"],
                                      features["segment_ids"]).numpy()
    assert np.std(ours) > 0.01
    np.testing.assert_allclose(checkpoints.model_from_tower(reread[0])(features).numpy(), ours,
                               atol=1e-5)


def test_tf1_export_through_the_cli_converts_back_to_the_same_pair(tmp_path, exported_pair):
    written = export.run(_flags(model_dir=str(exported_pair), format="tf1",
                                output_dir=str(tmp_path / "tf1")))
    assert written == [str(tmp_path / "tf1")]
    assert sorted(os.listdir(written[0])) == sorted(checkpoints.TF1_FILES + ("vocab.txt",))
    back = export.run(_flags(init_checkpoint=written[0], output_dir=str(tmp_path / "hf"),
                             set=["num_attention_heads=2"]))
    _assert_same_tower(back[0], str(exported_pair / "discriminator"))
    # TF1 records no head count: the generator's follows google-research's rule
    [generator], [expected] = (checkpoints.open_checkpoint(p).towers
                               for p in (back[1], str(exported_pair / "generator")))
    assert generator.tensors.keys() == expected.tensors.keys()
    for name, value in expected.tensors.items():
        np.testing.assert_array_equal(generator.tensors[name], value, err_msg=name)


@pytest.mark.parametrize("tower", [
    checkpoints.Tower("generator", None, {}, masked_lm=True),
    checkpoints.Tower("classifier", None, {}, labels=("0", "1"))])
def test_tf1_export_refuses_what_a_pretraining_pair_does_not_hold(tmp_path, tower):
    with pytest.raises(checkpoints.CheckpointError, match="a TF1 checkpoint holds an ELECTRA "
                                                          "discriminator.*this model is: "):
        checkpoints.write_tf1_checkpoint([tower], str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_staging_folders_of_a_killed_export_are_removed_at_start(tmp_path, caplog):
    out = tmp_path / "out"
    plant_temporaries(str(out), [".staging-k1ll3d00/", ".staging/", ".keep"])
    with pytest.raises(checkpoints.CheckpointError):  # no model: stops right after start-up
        export.run(_flags(model_dir=str(tmp_path / "absent"), output_dir=str(out)))
    assert sorted(os.listdir(out)) == [".keep", ".staging"]
    assert f"removed what killed runs left in {out}: .staging-k1ll3d00" in caplog.text


@pytest.fixture(scope="module")
def exported_pair(vocab_dir, tmp_path_factory):
    """A folder holding a Hugging Face discriminator/ and generator/, as a pretraining run
    leaves them."""
    folder = tmp_path_factory.mktemp("pair")
    config = tiny_config(vocab_size=vocab.load_tokenizer(vocab_dir).vocab_size)
    for seed, kind in enumerate(("discriminator", "generator")):
        model = randomize(checkpoints.build_model(kind, config), seed=seed)
        export.write_huggingface(checkpoints.tower_from_model(kind, model), vocab_dir, folder / kind)
    return folder


def test_export_from_a_bucket_to_a_bucket_writes_the_local_exports_bytes(
        tmp_path, exported_pair, gcs_emulator, monkeypatch):
    """A discriminator/ + generator/ pair in a bucket (a pretraining run's on a TPU VM, with
    its vocab) exports to a bucket as it does locally, and writes nothing on local disk;
    `write_huggingface` writes a bucket directly, too."""
    base = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    storage.upload_dir(str(exported_pair), f"{base}/run")
    monkeypatch.chdir(tmp_path)
    written = export.run(_flags(model_dir=f"{base}/run", output_dir=f"{base}/out"))
    assert written == [f"{base}/out/discriminator", f"{base}/out/generator"]
    local = tmp_path / "local"
    export.run(_flags(model_dir=str(exported_pair), output_dir=str(local)))
    assert files_under(f"{base}/out") == files_under(str(local))
    for name in files_under(str(local)):
        assert storage.read_bytes(f"{base}/out/{name}") == (local / name).read_bytes(), name
    tower = checkpoints.read_hf_tower(f"{base}/run/generator")
    export.write_huggingface(tower, f"{base}/run/generator", f"{base}/direct")
    for name in files_under(str(local / "generator")):
        assert storage.read_bytes(f"{base}/direct/{name}") == \
            (local / "generator" / name).read_bytes(), name
    assert_nothing_named_gs(tmp_path, os.getcwd())


@pytest.mark.parametrize("where", ["local", "gcs"])
def test_export_into_a_used_folder_leaves_nothing_of_the_earlier_export(
        request, tmp_path, exported_pair, where):
    """A pair, then a SavedModel, then one tower into the same folder: each time the folder
    holds what that export wrote, and the user's README.md."""
    single = exported_pair / "discriminator"
    out = tmp_path / "out" if where == "local" else (
        f"gs://{request.getfixturevalue('gcs_emulator')}/{uuid.uuid4().hex}/out")
    storage.makedirs(str(out))
    storage.write_text(storage.join(str(out), "README.md"), "mine")
    for step, (source, fmt) in enumerate([(exported_pair, "huggingface"), (single, "saved_model"),
                                          (single, "huggingface")]):
        export.run(_flags(model_dir=str(source), output_dir=str(out), format=fmt))
        fresh = tmp_path / f"fresh{step}"
        export.run(_flags(model_dir=str(source), output_dir=str(fresh), format=fmt))
        assert files_under(out) == sorted(files_under(fresh) + ["README.md"]), fmt
    assert storage.read_text(storage.join(str(out), "README.md")) == "mine"
