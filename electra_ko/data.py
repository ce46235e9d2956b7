"""`tf.data` reader for the pretraining shards written by `electra_ko.build_data`.

Shards (`pretrain_data.tfrecord-*`, optionally gzipped; `electra_ko.shards` defines the
format) sit next to `manifest.json`; paths may be local or `gs://` (`electra_ko.storage`
lists, checks and reads the manifest; `tf.data` reads the records). Before any training the
manifest is checked against the model: a different vocabulary (sha256 or size) or
sequence length is refused with both values named.

Every host reads its own slice of the shards (`distribute_datasets_from_function`
hands each input pipeline its id) and batches per replica with static shapes, as
TPUs need. The training stream is a pure function of (seed, position): each epoch
reads the host's shards back to back in a seeded order and permutes the examples
within blocks of `SHUFFLE_BLOCK`, so a resumed run starts the stream at its global
step by index arithmetic (skipping whole shards and blocks) and sees exactly the
examples an uninterrupted run would, on every strategy, with no iterator state in
the checkpoint (TPUStrategy's distributed iterator cannot be saved).
"""
import tensorflow as tf
import tqdm
from absl import logging

from electra_ko import shards, storage, tfrecord
from electra_ko.shards import FEATURES, MANIFEST, SHARD_PATTERN, recorded_counts

SHUFFLE_BLOCK = 4096  # examples permuted together (a few MB of serialized records)
READ_BUFFER_BYTES = 16 << 20  # per-shard read-ahead: sequential GCS reads stay fast


class DataError(ValueError):
    """The shards are missing, corrupt or do not match the model."""


def shard_files(data_dir):
    """The sorted shard paths in `data_dir`; an error if there are none."""
    if not storage.isdir(data_dir):
        raise DataError(f"pretraining data directory not found: {data_dir}")
    files = storage.glob(storage.join(data_dir, SHARD_PATTERN))
    if not files:
        raise DataError(f"no shards named {SHARD_PATTERN} in {data_dir}; "
                        "build them with `python -m electra_ko.build_data`")
    return files


def read_manifest(data_dir):
    """The manifest written beside the shards, as a dict."""
    path = storage.join(data_dir, MANIFEST)
    if not storage.exists(path):
        raise DataError(f"{path} not found: shards must come with the manifest "
                        "written by `python -m electra_ko.build_data`")
    manifest = storage.read_json(path, DataError)
    for key in shards.MODEL_KEYS:
        if key not in manifest:
            raise DataError(f"{path} has no {key!r}")
    return manifest


def check_manifest(manifest, data_dir, vocab_sha256, vocab_size, max_seq_length):
    """Refuse shards built with another vocabulary or sequence length than the model's."""
    expected = {"vocab_sha256": vocab_sha256, "vocab_size": vocab_size,
                "max_seq_length": max_seq_length}
    for key, want in expected.items():
        if manifest[key] != want:
            raise DataError(f"shards in {data_dir} were built with {key}={manifest[key]!r} "
                            f"but the model uses {key}={want!r}; rebuild the shards with "
                            "the model's vocabulary or point vocab_file at theirs")


def compression_of(manifest):
    """The TFRecord compression type ("GZIP" or "") the manifest declares."""
    compression = shards.compression_of(manifest)
    if compression is None:
        raise DataError(f"unsupported shard compression {manifest.get('compression')!r}")
    return compression


def parse_examples(serialized, max_seq_length):
    """A batch of serialized examples -> dict of int32 [batch, max_seq_length] tensors."""
    spec = {name: tf.io.FixedLenFeature([max_seq_length], tf.int64) for name in FEATURES}
    parsed = tf.io.parse_example(serialized, spec)
    return {name: tf.cast(value, tf.int32) for name, value in parsed.items()}


def host_files(files, input_context):
    """The shards of this input pipeline: every n-th file, starting at its id."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise DataError(f"{len(files)} shards cannot feed {n} hosts: build at least {n}")
    return files[i::n]


def shard_example_counts(manifest, files, compression=""):
    """Examples per shard of `files`, from the manifest's `shards` entries when it has
    them (build_data writes them), else by reading the shards once."""
    recorded = recorded_counts(manifest)
    names = [_name(path) for path in files]
    if all(name in recorded for name in names):
        return [recorded[name] for name in names]
    logging.info("the manifest has no example counts: counting the records of %d shards",
                 len(files))
    try:
        return [int(tf.data.TFRecordDataset(path, compression).reduce(0, lambda n, _: n + 1))
                for path in files]
    except tf.errors.DataLossError as e:
        raise corrupt_shard_error(files, compression, e) from None


def _name(path):
    return path.rstrip("/").rsplit("/", 1)[-1]


def verify_shards(files, compression, manifest):
    """Read every shard to its end (lengths and CRCs of every record) and compare its
    records with the manifest's count; returns the total. The first bad shard is a
    `DataError` naming it and the byte offset (of the uncompressed records for GZIP)."""
    recorded = recorded_counts(manifest)
    missing = sorted(set(recorded) - {_name(path) for path in files})
    if missing:
        directory = files[0][:-len(_name(files[0]))]
        raise DataError(f"pretraining shard {directory}{missing[0]} is missing: {MANIFEST} "
                        "lists it; rebuild the shards with `python -m electra_ko.build_data`")
    total = sum(storage.size(path) for path in files)
    records = 0
    with tqdm.tqdm(total=total, unit="B", unit_scale=True, desc="checking shards",
                   mininterval=0.5, disable=None) as bar:
        for path in files:
            count, end = _scan_shard(path, compression, bar.update)
            if recorded and recorded.get(_name(path)) != count:
                raise DataError(_count_mismatch(path, count, end, recorded.get(_name(path))))
            records += count
    return records


def _scan_shard(path, compression, on_read):
    """(records, uncompressed bytes) of one shard, or a `DataError` at its first bad record."""
    with storage.open_read(path, binary=True) as f:
        try:
            return tfrecord.scan_records(f, compression, on_read)
        except tfrecord.RecordError as e:
            where = f"byte {e.offset}" + (" of its uncompressed records" if compression else "")
            raise DataError(f"corrupt pretraining shard {path} at {where}: {e.problem}; "
                            "rebuild it with `python -m electra_ko.build_data`") from None


def _count_mismatch(path, count, end, expected):
    listed = (f"{MANIFEST} lists {expected}" if expected is not None
              else f"{MANIFEST} does not list it")
    return (f"pretraining shard {path} holds {count} records (ending at byte {end}) but "
            f"{listed}: shards and manifest come from different builds; rebuild them with "
            "`python -m electra_ko.build_data`")


def _permutation(size, seed):
    """A permutation of range(size) keyed by `seed` ([2] int64), int64 [size]."""
    keys = tf.random.stateless_uniform([size], seed=seed, alg="philox")
    return tf.cast(tf.argsort(keys, stable=True), tf.int64)


def _epoch_records(files, counts, compression, seed, epoch, skip):
    """The serialized examples of one epoch, from its `skip`-th on.

    The epoch's order: shards in a permutation keyed by (seed, epoch), read back to back,
    examples permuted within consecutive blocks of SHUFFLE_BLOCK. Starting mid-epoch
    skips whole shards, then records up to the start of the block holding `skip`.
    """
    epoch_seed = tf.stack([tf.cast(seed, tf.int64), epoch])
    order = _permutation(tf.size(files), epoch_seed)
    files, counts = tf.gather(files, order), tf.gather(counts, order)
    first_block = skip // SHUFFLE_BLOCK
    block_start = first_block * SHUFFLE_BLOCK
    ends = tf.cumsum(counts)
    first_file = tf.searchsorted(ends, tf.reshape(block_start, [1]), side="right")[0]
    skip_in_file = block_start - (ends[first_file] - counts[first_file])
    records = tf.data.TFRecordDataset(files[first_file:], compression,
                                      buffer_size=READ_BUFFER_BYTES).skip(skip_in_file)
    blocks = tf.data.Dataset.zip(tf.data.Dataset.range(first_block, tf.int64.max),
                                 records.batch(SHUFFLE_BLOCK))

    def permute(index, block):
        block_seed = tf.random.experimental.stateless_fold_in(epoch_seed, index, alg="philox")
        return tf.gather(block, _permutation(tf.shape(block, tf.int64)[0], block_seed))

    return blocks.map(permute).unbatch().skip(skip - block_start)


def training_records(files, counts, compression="", seed=0, first_example=0):
    """The endless training stream of serialized examples from its `first_example`-th on
    (a pure function of the shards, `seed` and that position)."""
    total = sum(counts)
    if total == 0:
        raise DataError(f"the {len(files)} training shards hold no examples")
    first_epoch, skip = divmod(int(first_example), total)
    files = tf.constant(files)
    counts = tf.constant(counts, tf.int64)
    return tf.data.Dataset.range(first_epoch, tf.int64.max).flat_map(
        lambda epoch: _epoch_records(files, counts, compression, seed, epoch,
                                     tf.where(epoch == first_epoch, tf.constant(skip, tf.int64),
                                              tf.constant(0, tf.int64))))


def make_dataset(files, batch_size, max_seq_length, compression="", training=True, seed=0,
                 num_batches=None, counts=None, first_batch=0):
    """Batches of parsed examples from `files`.

    Training: the seeded endless stream of `training_records`, from batch `first_batch`
    on (`counts`: examples per shard, counted when not given). Evaluation: one ordered
    pass (at most `num_batches`). `drop_remainder` keeps shapes static.
    """
    if training:
        counts = counts if counts is not None else shard_example_counts({}, files, compression)
        records = training_records(files, counts, compression, seed, first_batch * batch_size)
    else:
        records = tf.data.TFRecordDataset(files, compression, buffer_size=READ_BUFFER_BYTES)
    batches = records.batch(batch_size, drop_remainder=True)
    if num_batches:
        batches = batches.take(num_batches)
    batches = batches.map(lambda s: parse_examples(s, max_seq_length),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def distributed_dataset(strategy, files, global_batch_size, max_seq_length, compression="",
                        training=True, seed=0, num_batches=None, counts=None, first_step=0):
    """Per-replica batches over all hosts: each host reads its own shards. Training
    starts at global step `first_step`: each host has fed its local replicas one batch
    each per step before it."""
    if global_batch_size % strategy.num_replicas_in_sync:
        raise DataError(f"batch size {global_batch_size} is not a multiple of the "
                        f"{strategy.num_replicas_in_sync} replicas")
    if training and counts is None:
        counts = shard_example_counts({}, files, compression)
    count_of = dict(zip(files, counts)) if training else {}

    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        local_replicas = input_context.num_replicas_in_sync // input_context.num_input_pipelines
        host = host_files(files, input_context)
        host_counts = [count_of[f] for f in host] if training else None
        return make_dataset(host, batch, max_seq_length, compression, training,
                            seed + input_context.input_pipeline_id, num_batches, host_counts,
                            first_step * local_replicas)

    return strategy.distribute_datasets_from_function(dataset_fn)


def find_corrupt_shards(files, compression=""):
    """The shards that cannot be read to the end, each with TensorFlow's complaint.

    Called after a `DataLossError` to name the culprit instead of a deep traceback.
    """
    bad = []
    for path in files:
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=compression):
                pass
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            bad.append(f"{path} ({e.message.splitlines()[0]})")
    return bad


def corrupt_shard_error(files, compression, error):
    """A `DataError` naming the corrupt shard(s) behind a `DataLossError`."""
    bad = find_corrupt_shards(files, compression) or [f"one of {len(files)} shards"]
    return DataError("corrupt pretraining shard: " + "; ".join(bad) +
                     f" -- rebuild it with `python -m electra_ko.build_data` ({error.message})")
