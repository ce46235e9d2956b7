"""tf.data reader: parsing, per-host sharding, manifest checks and clear errors."""
import gzip
import json
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from electra_ko import data, shards

SEQ = 8


def _example(ids, seq_len):
    mask = [1] * len(ids) + [0] * (seq_len - len(ids))
    ids = list(ids) + [0] * (seq_len - len(ids))
    feature = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=values))
               for name, values in zip(shards.FEATURES, (ids, mask, [0] * seq_len))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shards(directory, num_shards=2, per_shard=8, seq_len=SEQ, vocab_size=64,
                 vocab_sha256="abc", gzipped=False, seed=0, sizes=None):
    """Shards as build_data writes them (`sizes`: examples per shard, default per_shard
    each); examples are numbered across shards from 0 and example k starts with id 5+k
    (so tests can tell them apart); the rest are random ids below vocab_size."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    sizes = sizes or [per_shard] * num_shards
    entries, number = [], 0
    for s, size in enumerate(sizes):
        name = shards.shard_name(s, len(sizes), shards.GZIP if gzipped else "")
        options = tf.io.TFRecordOptions("GZIP" if gzipped else "")
        with tf.io.TFRecordWriter(os.path.join(directory, name), options) as writer:
            for _ in range(size):
                length = int(rng.integers(3, seq_len + 1))
                ids = [5 + number] + rng.integers(5, vocab_size, length - 1).tolist()
                writer.write(_example(ids, seq_len))
                number += 1
        entries.append({"file": name, "examples": size})
    manifest = dict(vocab_sha256=vocab_sha256, vocab_size=vocab_size, max_seq_length=seq_len,
                    compression="gzip" if gzipped else None, seed=seed, shards=entries)
    with open(os.path.join(directory, shards.MANIFEST), "w") as f:
        json.dump(manifest, f)
    return directory


def _first_ids(batches):
    return sorted(int(i) for b in batches for i in b["input_ids"][:, 0].numpy())


@pytest.mark.parametrize("gzipped", [False, True])
def test_evaluation_pass_parses_every_example_once(tmp_path, gzipped):
    directory = write_shards(str(tmp_path), gzipped=gzipped)
    manifest = data.read_manifest(directory)
    dataset = data.make_dataset(data.shard_files(directory), 4, SEQ,
                                data.compression_of(manifest), training=False)
    batches = list(dataset)
    assert len(batches) == 4
    for batch in batches:
        assert {k: v.dtype for k, v in batch.items()} == dict.fromkeys(data.FEATURES, tf.int32)
        assert all(v.shape == (4, SEQ) for v in batch.values())
        lengths = batch["input_mask"].numpy().sum(1)
        assert np.all(batch["input_ids"].numpy()[np.arange(SEQ)[None] >= lengths[:, None]] == 0)
    assert _first_ids(batches) == list(range(5, 21))


def test_training_stream_is_shuffled_repeated_and_seeded(tmp_path):
    files = data.shard_files(write_shards(str(tmp_path)))
    def take(seed):
        return [b["input_ids"][:, 0].numpy().tolist()
                for b in data.make_dataset(files, 4, SEQ, seed=seed).take(20)]
    first = take(7)
    assert first == take(7)
    assert first != take(8)
    flat = [i for batch in first for i in batch]
    assert len(flat) == 80 and set(flat) == set(range(5, 21))  # repeats, reaches every example
    assert flat[:16] != list(range(5, 21))


def _stream(files, batch, first_batch, num, seed=3, counts=None):
    dataset = data.make_dataset(files, batch, SEQ, seed=seed, counts=counts, first_batch=first_batch)
    return [b["input_ids"][:, 0].numpy().tolist() for b in dataset.take(num)]


def test_training_stream_starts_exactly_at_any_batch(tmp_path, monkeypatch):
    """Resume without iterator state: batch k of a stream started at k is batch k of the
    uninterrupted stream, across shard, block and epoch boundaries."""
    monkeypatch.setattr(data, "SHUFFLE_BLOCK", 5)
    directory = write_shards(str(tmp_path), sizes=[7, 3, 11, 4])
    files = data.shard_files(directory)
    counts = data.shard_example_counts(data.read_manifest(directory), files)
    assert counts == [7, 3, 11, 4]
    whole = _stream(files, 3, 0, 40, counts=counts)  # 120 examples: 4.8 epochs of 25
    flat = sum(whole, [])
    for epoch in range(4):  # every example once per epoch, each epoch in its own order
        assert sorted(flat[epoch * 25:(epoch + 1) * 25]) == list(range(5, 30))
    assert flat[:25] != flat[25:50] and flat[:25] != list(range(5, 30))
    for start in (1, 2, 8, 9, 16, 33):
        assert _stream(files, 3, start, 40 - start, counts=counts) == whole[start:], start
    assert _stream(files, 3, 0, 40) == whole  # counting the records gives the same counts


def test_hosts_read_disjoint_shards():
    files = [f"shard-{i}" for i in range(5)]
    contexts = [tf.distribute.InputContext(2, i, 2) for i in range(2)]
    assert [data.host_files(files, c) for c in contexts] == [files[0::2], files[1::2]]
    with pytest.raises(data.DataError, match="2 shards cannot feed 3 hosts"):
        data.host_files(files[:2], tf.distribute.InputContext(3, 0, 3))


def test_distributed_dataset_splits_global_batch_over_two_replicas(tmp_path, two_cpu_strategy):
    files = data.shard_files(write_shards(str(tmp_path)))
    strategy = two_cpu_strategy
    dataset = data.distributed_dataset(strategy, files, 4, SEQ, training=False)
    batch = next(iter(dataset))
    per_replica = strategy.experimental_local_results(batch["input_ids"])
    assert [r.shape for r in per_replica] == [(2, SEQ), (2, SEQ)]
    with pytest.raises(data.DataError, match="batch size 5 is not a multiple of the 2 replicas"):
        data.distributed_dataset(strategy, files, 5, SEQ)


def test_manifest_with_another_vocab_is_refused_naming_both(tmp_path):
    directory = write_shards(str(tmp_path), vocab_sha256="aaa")
    manifest = data.read_manifest(directory)
    with pytest.raises(data.DataError, match=r"vocab_sha256='aaa' but the model uses "
                                             r"vocab_sha256='bbb'"):
        data.check_manifest(manifest, directory, "bbb", 64, SEQ)
    with pytest.raises(data.DataError, match=r"vocab_size=64 but the model uses vocab_size=65"):
        data.check_manifest(manifest, directory, "aaa", 65, SEQ)
    data.check_manifest(manifest, directory, "aaa", 64, SEQ)


def test_missing_directory_shards_or_manifest_give_clear_errors(tmp_path):
    with pytest.raises(data.DataError, match="directory not found"):
        data.shard_files(str(tmp_path / "nope"))
    with pytest.raises(data.DataError, match="no shards named pretrain_data.tfrecord-"):
        data.shard_files(str(tmp_path))
    with pytest.raises(data.DataError, match="manifest.json not found"):
        data.read_manifest(str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"vocab_size": 3,\n oops}')
    with pytest.raises(data.DataError, match=r"manifest.json:2:2: invalid JSON"):
        data.read_manifest(str(tmp_path))


def test_truncated_shard_is_named(tmp_path):
    directory = write_shards(str(tmp_path))
    files = data.shard_files(directory)
    with open(files[1], "rb") as f:
        content = f.read()
    with open(files[1], "wb") as f:
        f.write(content[:-7])
    with pytest.raises(tf.errors.DataLossError) as caught:
        list(data.make_dataset(files, 4, SEQ, training=False))
    error = data.corrupt_shard_error(files, "", caught.value)
    assert files[1] in str(error) and files[0] not in str(error)
    assert "rebuild it" in str(error)


def _record_starts(raw):
    """The byte offset of every record in uncompressed TFRecord bytes."""
    starts, position = [], 0
    while position < len(raw):
        starts.append(position)
        position += 16 + struct.unpack_from("<Q", raw, position)[0]
    return starts


def _damage(raw, damage):
    """(damaged copy of a shard's records, offset of the record hit)."""
    raw, record = bytearray(raw), _record_starts(raw)[2]
    if damage == "truncated":
        return raw[:-3], _record_starts(raw)[-1]
    raw[record + (1 if damage == "length" else 12 + 5)] ^= 0x40  # header or data byte
    return raw, record


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("damage, problem", [
    ("truncated", "the file ends inside a record"),
    ("data", "record fails its data CRC"),
    ("length", "the length field fails its CRC")])
def test_shard_check_names_the_first_corrupt_shard_and_byte(tmp_path, gzipped, damage, problem):
    directory = write_shards(str(tmp_path), num_shards=3, gzipped=gzipped)
    victim = data.shard_files(directory)[1]
    opener = gzip.open if gzipped else open
    with opener(victim, "rb") as f:
        damaged, offset = _damage(f.read(), damage)
    with opener(victim, "wb") as f:
        f.write(damaged)
    manifest = data.read_manifest(directory)
    with pytest.raises(data.DataError) as caught:
        data.verify_shards(data.shard_files(directory), data.compression_of(manifest), manifest)
    uncompressed = " of its uncompressed records" if gzipped else ""
    assert str(caught.value).startswith(
        f"corrupt pretraining shard {victim} at byte {offset}{uncompressed}: ")
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def test_shard_check_names_a_broken_gzip_stream(tmp_path):
    directory = write_shards(str(tmp_path), gzipped=True)
    victim = data.shard_files(directory)[0]
    with open(victim, "rb") as f:
        content = f.read()
    with open(victim, "wb") as f:
        f.write(content[:-20])
    with pytest.raises(data.DataError, match=(  # located to within 64 KB: here, the first record
            f"corrupt pretraining shard {victim} at byte 0 of its uncompressed records: "
            "the gzip stream breaks here")):
        data.verify_shards(data.shard_files(directory), "GZIP", data.read_manifest(directory))


def test_shard_check_refuses_shards_and_manifest_of_different_builds(tmp_path):
    directory = write_shards(str(tmp_path), num_shards=3, per_shard=4)
    files = data.shard_files(directory)
    manifest = data.read_manifest(directory)
    assert data.verify_shards(files, "", manifest) == 12
    manifest["shards"][1]["examples"] = 5
    with pytest.raises(data.DataError, match=(
            f"pretraining shard {files[1]} holds 4 records \\(ending at byte "
            f"{os.path.getsize(files[1])}\\) but manifest.json lists 5: shards and manifest")):
        data.verify_shards(files, "", manifest)
    del manifest["shards"][1]
    with pytest.raises(data.DataError, match=f"{files[1]} holds 4 .* manifest.json does not list"):
        data.verify_shards(files, "", manifest)
    with pytest.raises(data.DataError, match=f"pretraining shard {files[2]} is missing"):
        data.verify_shards(files[:2], "", data.read_manifest(directory))


def test_gzip_shards_declared_in_manifest_are_read_as_gzip(tmp_path):
    directory = write_shards(str(tmp_path), gzipped=True)
    assert data.compression_of(data.read_manifest(directory)) == "GZIP"
    with gzip.open(data.shard_files(directory)[0]) as f:
        assert f.read(1)  # really gzip on disk
    with pytest.raises(data.DataError, match="unsupported shard compression 'zstd'"):
        data.compression_of({"compression": "zstd"})
