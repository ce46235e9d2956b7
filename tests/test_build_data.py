"""build_data + tfrecord: sharding, byte-level TF compatibility, determinism, resume, bad input."""
import os
import random
import subprocess
import sys
import uuid

import numpy as np
import pytest

from electra_ko import build_data, config, shards, storage, vocab
from test_storage import plant_temporaries

NUM_UNUSED = 3
FIRST_WORD_ID = 5 + NUM_UNUSED
SYLLABLES = [chr(0xAC00 + i) for i in range(600)]  # one Hangul syllable = one vocab word
MAX_LEN = 32


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    """Bare vocab.txt: specials 0-4, [unusedN], then single-syllable words."""
    directory = tmp_path_factory.mktemp("vocab")
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [f"[unused{i}]" for i in range(NUM_UNUSED)] + SYLLABLES
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return str(directory)


def make_corpus(num_docs=12, seed=0):
    """Documents over disjoint syllable ranges (doc d uses syllables 40d..40d+39), so every
    token id tells which document it came from; sentence lengths 1-30 words."""
    rng = random.Random(seed)
    docs = []
    for d in range(num_docs):
        words = SYLLABLES[40 * d:40 * d + 40]
        docs.append([" ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))
                     for _ in range(rng.randint(3, 25))])
    return docs


def write_corpus(path, docs):
    path.write_text("\n\n".join("\n".join(doc) for doc in docs) + "\n", encoding="utf-8")
    return str(path)


def run(*args):
    build_data.main([str(a) for a in args])


def build(corpus, vocab_dir, out, *extra, num_shards=3):
    run("--corpus", corpus, "--vocab", vocab_dir, "--output_dir", out,
        "--max_seq_length", MAX_LEN, "--num_shards", num_shards, *extra)
    return storage.read_json(storage.join(out, shards.MANIFEST))


def shard_bytes(out):
    return {os.path.basename(p): storage.open_read(p, binary=True).read()
            for p in storage.glob(storage.join(out, shards.SHARD_PATTERN))}


def parse_shards(tf, paths, compression=""):
    """All examples of the shards, parsed by TensorFlow itself."""
    spec = {name: tf.io.FixedLenFeature([MAX_LEN], tf.int64)
            for name in ("input_ids", "input_mask", "segment_ids")}
    dataset = tf.data.TFRecordDataset(paths, compression_type=compression)
    dataset = dataset.map(lambda record: tf.io.parse_single_example(record, spec)).batch(100000)
    batch = next(iter(dataset))
    return {name: batch[name].numpy() for name in spec}


# --------------------------------------------------------------------------- end to end


def test_shards_follow_electra_layout_without_mixing_documents(tf, tmp_path, vocab_dir):
    docs = make_corpus()
    corpus = write_corpus(tmp_path / "corpus.txt", docs)
    manifest = build(corpus, vocab_dir, tmp_path / "out")
    paths = storage.glob(str(tmp_path / "out" / shards.SHARD_PATTERN))
    assert [os.path.basename(p) for p in paths] == [
        f"pretrain_data.tfrecord-0000{i}-of-00003" for i in range(3)]
    features = parse_shards(tf, paths)
    ids, mask, segments = features["input_ids"], features["input_mask"], features["segment_ids"]
    assert ids.shape == (manifest["examples"], MAX_LEN)
    assert manifest["tokens"] == mask.sum()
    lengths = mask.sum(axis=1)
    has_second = segments.any(axis=1)
    for row, n, two in zip(ids, lengths, has_second):
        assert row[0] == 2 and row[n - 1] == 3 and (row[n:] == 0).all()
        words = row[(row >= FIRST_WORD_ID)]
        assert len(words) == n - 2 - two  # [CLS], one [SEP] per segment
        assert len(set((words - FIRST_WORD_ID) // 40)) == 1  # one document only
    a_lengths = lengths - segments.sum(axis=1)
    for row, a, n, two in zip(ids, a_lengths, lengths, has_second):
        if two:
            assert row[a - 1] == 3 and 3 not in row[1:a - 1].tolist()
    np.testing.assert_array_equal(segments, (np.arange(MAX_LEN) >= a_lengths[:, None]) & (mask == 1))
    streams = [[FIRST_WORD_ID + SYLLABLES.index(w) for s in doc for w in s.split()] for doc in docs]
    for row in ids:
        words = row[row >= FIRST_WORD_ID].tolist()
        stream = iter(streams[(words[0] - FIRST_WORD_ID) // 40])
        assert all(word in stream for word in words)  # in document order (truncation may skip)


def test_documents_stay_whole_within_one_shard(tf, tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus(num_docs=9))
    build(corpus, vocab_dir, tmp_path / "out")
    docs_per_shard = []
    for path in storage.glob(str(tmp_path / "out" / shards.SHARD_PATTERN)):
        ids = parse_shards(tf, [path])["input_ids"]
        docs_per_shard.append(set(((ids[ids >= FIRST_WORD_ID] - FIRST_WORD_ID) // 40).tolist()))
    assert sum(map(len, docs_per_shard)) == 9
    assert set.union(*docs_per_shard) == set(range(9))


def test_manifest_contents(tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus())
    manifest = build(corpus, vocab_dir, tmp_path / "out", "--seed", 7, "--gzip")
    from electra_ko.vocab import load_tokenizer

    tokenizer = load_tokenizer(vocab_dir)
    assert manifest["complete"] is True
    assert (manifest["max_seq_length"], manifest["seed"], manifest["num_shards"]) == (MAX_LEN, 7, 3)
    assert manifest["vocab_sha256"] == tokenizer.vocab_sha256
    assert manifest["vocab_size"] == len(SYLLABLES) + 5 + NUM_UNUSED
    assert manifest["compression"] == "GZIP"
    assert manifest["corpus"] == [{"path": corpus, "bytes": os.path.getsize(corpus)}]
    assert manifest["command"].startswith("python -m electra_ko.build_data --corpus ")
    assert [s["file"] for s in manifest["shards"]] == [
        f"pretrain_data.tfrecord-0000{i}-of-00003.gz" for i in range(3)]
    assert manifest["examples"] == sum(s["examples"] for s in manifest["shards"]) > 0
    assert sum(s["documents"] for s in manifest["shards"]) == 12
    assert not (tmp_path / "out" / "manifest.partial.json").exists()


def test_gzip_shards_parse_in_tensorflow(tf, tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus())
    plain = build(corpus, vocab_dir, tmp_path / "plain")
    build(corpus, vocab_dir, tmp_path / "gz", "--gzip")
    unzipped = parse_shards(tf, storage.glob(str(tmp_path / "plain" / shards.SHARD_PATTERN)))
    gzipped = str(tmp_path / "gz" / shards.SHARD_PATTERN) + shards.GZIP_SUFFIX
    zipped = parse_shards(tf, storage.glob(gzipped), shards.GZIP)
    assert len(zipped["input_ids"]) == plain["examples"]
    for name in unzipped:
        np.testing.assert_array_equal(zipped[name], unzipped[name])


def test_same_bytes_whatever_the_worker_count(tmp_path, vocab_dir):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus(num_docs=14))
    build(corpus, vocab_dir, tmp_path / "one")
    subprocess.run([sys.executable, "-m", "electra_ko.build_data", "--corpus", corpus,
                    "--vocab", vocab_dir, "--output_dir", str(tmp_path / "two"), "--num_shards", "3",
                    "--max_seq_length", str(MAX_LEN), "--num_workers", "2"],
                   check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    one, two = shard_bytes(str(tmp_path / "one")), shard_bytes(str(tmp_path / "two"))
    assert len(one) == 3 and one == two
    build(corpus, vocab_dir, tmp_path / "other_seed", "--seed", 99)
    assert shard_bytes(str(tmp_path / "other_seed")) != one


def test_fast_tokenizer_path_writes_the_same_bytes_as_the_plain_one(tmp_path, vocab_dir,
                                                                   monkeypatch):
    docs = make_corpus(num_docs=8)
    docs[1] += ["가나!! 다\t라  마\u3000바 😀 中 " + "가" * 201, "\x00", "  "]
    corpus = write_corpus(tmp_path / "corpus.txt", docs)
    fast = build(corpus, vocab_dir, tmp_path / "fast")
    monkeypatch.setattr(vocab.WordPieceTokenizer, "encode_corpus", vocab.Tokenizer.encode_corpus)
    plain = build(corpus, vocab_dir, tmp_path / "plain")
    assert fast["shards"] == plain["shards"]
    assert shard_bytes(str(tmp_path / "fast")) == shard_bytes(str(tmp_path / "plain"))


def test_resume_after_crash_keeps_finished_shards(tmp_path, vocab_dir, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus(num_docs=14))
    clean = tmp_path / "clean"
    build(corpus, vocab_dir, clean, num_shards=4)
    real_build_shard = build_data.build_shard
    crash_at = [2]
    built = []

    def crashing_build_shard(job, index, *rest):
        if index in crash_at:
            raise KeyboardInterrupt("simulated crash")
        built.append(index)
        return real_build_shard(job, index, *rest)

    monkeypatch.setattr(build_data, "build_shard", crashing_build_shard)
    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        build(corpus, vocab_dir, out, num_shards=4)
    assert sorted(os.listdir(out)) == ["manifest.partial.json", "pretrain_data.tfrecord-00000-of-00004",
                                       "pretrain_data.tfrecord-00001-of-00004"]
    crash_at.clear()
    built.clear()
    build(corpus, vocab_dir, out, num_shards=4)
    assert built == [2, 3]  # finished shards were not rebuilt
    assert shard_bytes(str(out)) == shard_bytes(str(clean))
    rerun = storage.read_json(str(out / shards.MANIFEST))
    assert rerun["shards"] == storage.read_json(str(clean / shards.MANIFEST))["shards"]


def test_a_build_killed_before_recording_its_first_shard_resumes(tmp_path, vocab_dir,
                                                               monkeypatch):
    """Killed between publishing a shard and recording it: the re-run must rebuild it, not
    refuse shards "of unknown origin"."""
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus(num_docs=14))
    clean = tmp_path / "clean"
    build(corpus, vocab_dir, clean, num_shards=4)
    real_write_manifest = build_data.write_manifest

    def killed_when_recording_a_shard(output_dir, settings, done, command, complete):
        if done and not complete:
            raise KeyboardInterrupt("killed")
        return real_write_manifest(output_dir, settings, done, command, complete)

    monkeypatch.setattr(build_data, "write_manifest", killed_when_recording_a_shard)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        build(corpus, vocab_dir, out, num_shards=4)
    assert "pretrain_data.tfrecord-00000-of-00004" in os.listdir(out)
    monkeypatch.setattr(build_data, "write_manifest", real_write_manifest)
    build(corpus, vocab_dir, out, num_shards=4)
    assert shard_bytes(str(out)) == shard_bytes(str(clean))


def test_temporaries_of_a_killed_build_are_removed_at_start(tmp_path, vocab_dir, caplog):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus())
    out = tmp_path / "out"
    leftovers = [".pretrain_data.tfrecord-00001-of-00003.k1ll3d00.tmp",
                 ".manifest.partial.json.k1ll3d00.tmp", ".manifest.json.k1ll3d00.tmp"]
    plant_temporaries(str(out), leftovers + [".keep", ".corpus.txt.k1ll3d00.tmp"])
    build(corpus, vocab_dir, out)
    assert sorted(name for name in os.listdir(out) if name.startswith(".")) == [
        ".corpus.txt.k1ll3d00.tmp", ".keep"]
    assert (f"removed what killed runs left in {out}: "
            + ", ".join(sorted(leftovers))) in caplog.text


def test_refuses_output_built_with_other_settings(tmp_path, vocab_dir, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus())
    build(corpus, vocab_dir, tmp_path / "out", "--seed", 1)
    with pytest.raises(SystemExit):
        build(corpus, vocab_dir, tmp_path / "out", "--seed", 2)
    assert "seed: 1 there, 2 now" in capsys.readouterr().err
    manifest = build(corpus, vocab_dir, tmp_path / "out", "--seed", 2, "--overwrite")
    assert manifest["seed"] == 2


def test_refuses_shards_without_manifest(tmp_path, vocab_dir, capsys):
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus())
    out = tmp_path / "out"
    out.mkdir()
    (out / "pretrain_data.tfrecord-00000-of-00003").write_bytes(b"stale")
    with pytest.raises(SystemExit):
        build(corpus, vocab_dir, out)
    assert "no manifest.json" in capsys.readouterr().err


def test_gcs_round_trip(gcs_emulator, tmp_path, vocab_dir):
    docs = make_corpus()
    local_corpus = write_corpus(tmp_path / "corpus.txt", docs)
    root = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    remote_corpus = storage.join(root, "corpus", "part-0.txt")
    storage.write_text(remote_corpus, (tmp_path / "corpus.txt").read_text(encoding="utf-8"))
    remote_vocab = storage.join(root, "vocab")
    storage.write_text(storage.join(remote_vocab, "vocab.txt"),
                       open(os.path.join(vocab_dir, "vocab.txt"), encoding="utf-8").read())
    local = build(local_corpus, vocab_dir, tmp_path / "out")
    remote = build(storage.join(root, "corpus", "*.txt"), remote_vocab, storage.join(root, "data"))
    assert remote["examples"] == local["examples"]
    assert shard_bytes(storage.join(root, "data")) == shard_bytes(str(tmp_path / "out"))


# --------------------------------------------------------------------------- bad input


def test_missing_corpus_is_named(tmp_path, vocab_dir, capsys):
    with pytest.raises(SystemExit):
        build(str(tmp_path / "nope*.txt"), vocab_dir, tmp_path / "out")
    assert f"corpus input not found: {tmp_path / 'nope*.txt'}" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["", "\n \n\n"])
def test_empty_corpus_is_refused(tmp_path, vocab_dir, capsys, content):
    (tmp_path / "empty.txt").write_text(content)
    with pytest.raises(SystemExit):
        build(str(tmp_path / "empty.txt"), vocab_dir, tmp_path / "out")
    assert "empty corpus" in capsys.readouterr().err


def test_vocab_without_specials_is_refused(tmp_path, capsys):
    (tmp_path / "vocab.txt").write_text("가\n나\n", encoding="utf-8")
    corpus = write_corpus(tmp_path / "corpus.txt", make_corpus(num_docs=1))
    with pytest.raises(SystemExit):
        build(corpus, str(tmp_path), tmp_path / "out")
    assert "lacks special tokens [PAD], [UNK], [CLS], [SEP], [MASK]" in capsys.readouterr().err


def test_undecodable_line_is_reported_skipped_and_counted(tmp_path, vocab_dir, capsys):
    good = tmp_path / "good.txt"
    write_corpus(good, [["가 나", "다 라"], ["마 바"]])
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xea\xb0\x80 \xeb\x82\x98\n\xff\xfe broken\n\xeb\x8b\xa4 \xeb\x9d\xbc\n\n"
                    b"\xeb\xa7\x88 \xeb\xb0\x94\n")
    manifest = build(str(bad), vocab_dir, tmp_path / "out", num_shards=1)
    assert f"skipped 1 lines that are not valid UTF-8 (e.g. {bad}:2)" in capsys.readouterr().err
    assert manifest["skipped_lines"] == 1
    build(str(good), vocab_dir, tmp_path / "good_out", num_shards=1)
    assert list(shard_bytes(str(tmp_path / "out")).values()) == \
        list(shard_bytes(str(tmp_path / "good_out")).values())


def test_more_shards_than_documents_are_capped_never_empty(tmp_path, vocab_dir, capsys):
    corpus = tmp_path / "two_docs.txt"
    corpus.write_text("영화가 정말 좋았다\n배우도 좋았다\n\n음악이 지루했다\n장면이 아쉬웠다\n",
                      encoding="utf-8")
    manifest = build(str(corpus), vocab_dir, tmp_path / "out", num_shards=5)
    count = manifest["num_shards"]
    assert 1 <= count <= 2 and len(shard_bytes(tmp_path / "out")) == count
    assert all(entry["examples"] > 0 for entry in manifest["shards"])
    assert f"--num_shards 5 capped to {count}" in capsys.readouterr().err


def test_command_line_parses_into_settings_with_the_one_set_of_defaults(capsys):
    settings = build_data.parse_settings(["--corpus", "a.txt", "b/*.txt", "--corpus", "c.txt",
                                          "--vocab", "v", "--output_dir", "out", "--gzip"])
    assert settings == build_data.BuildSettings(corpus=("a.txt", "c.txt", "b/*.txt"), vocab="v",
                                                output_dir="out", gzip=True)
    assert config.load_config(config.PRETRAIN).num_shards == settings.num_shards
    with pytest.raises(SystemExit) as exit_info:
        build_data.parse_settings(["--corpus", "a.txt", "--output_dir", "out"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "build_data: error: --vocab is required"
