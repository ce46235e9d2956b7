"""`tf.data` reader for the pretraining shards written by `electra_ko.build_data`.

Shards (`pretrain_data.tfrecord-*`, optionally gzipped) sit next to `manifest.json`;
paths may be local or `gs://` (read through `tf.io.gfile`). Before any training the
manifest is checked against the model: a different vocabulary (sha256 or size) or
sequence length is refused with both values named.

Every host reads its own slice of the shards (`distribute_datasets_from_function`
hands each input pipeline its id) and batches per replica with static shapes, as
TPUs need. The training pipeline is a pure function of the seed, and its iterator is
checkpointed by the driver, so a resumed run sees exactly the examples it would have.
"""
import json

import tensorflow as tf

SHARD_PATTERN = "pretrain_data.tfrecord-*"
MANIFEST_NAME = "manifest.json"
FEATURES = ("input_ids", "input_mask", "segment_ids")
SHUFFLE_BUFFER = 1000  # examples; kept small because it is part of every checkpoint


class DataError(ValueError):
    """The shards are missing, corrupt or do not match the model."""


def shard_files(data_dir):
    """The sorted shard paths in `data_dir`; an error if there are none."""
    if not tf.io.gfile.isdir(data_dir):
        raise DataError(f"pretraining data directory not found: {data_dir}")
    files = sorted(tf.io.gfile.glob(tf.io.gfile.join(data_dir, SHARD_PATTERN)))
    if not files:
        raise DataError(f"no shards named {SHARD_PATTERN} in {data_dir}; "
                        "build them with `python -m electra_ko.build_data`")
    return files


def read_manifest(data_dir):
    """The manifest written beside the shards, as a dict."""
    path = tf.io.gfile.join(data_dir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path} not found: shards must come with the manifest "
                        "written by `python -m electra_ko.build_data`")
    with tf.io.gfile.GFile(path) as f:
        try:
            manifest = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    for key in ("vocab_sha256", "vocab_size", "max_seq_length"):
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
    value = (manifest.get("compression") or "").upper()
    if value in ("", "NONE"):
        return ""
    if value in ("GZIP", "GZ"):
        return "GZIP"
    raise DataError(f"unsupported shard compression {manifest.get('compression')!r}")


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


def make_dataset(files, batch_size, max_seq_length, compression="", training=True, seed=0,
                 num_batches=None):
    """Batches of parsed examples from `files`.

    Training: files and examples shuffled with `seed`, repeated forever. Evaluation:
    one ordered pass (at most `num_batches`). `drop_remainder` keeps shapes static.
    """
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        files_ds = files_ds.shuffle(len(files), seed=seed).repeat()
    records = files_ds.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type=compression),
        cycle_length=min(4, len(files)))
    if training:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed + 1)
    batches = records.batch(batch_size, drop_remainder=True)
    if num_batches:
        batches = batches.take(num_batches)
    batches = batches.map(lambda s: parse_examples(s, max_seq_length),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def distributed_dataset(strategy, files, global_batch_size, max_seq_length, compression="",
                        training=True, seed=0, num_batches=None):
    """Per-replica batches over all hosts: each host reads its own shards."""
    if global_batch_size % strategy.num_replicas_in_sync:
        raise DataError(f"batch size {global_batch_size} is not a multiple of the "
                        f"{strategy.num_replicas_in_sync} replicas")

    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return make_dataset(host_files(files, input_context), batch, max_seq_length,
                            compression, training, seed + input_context.input_pipeline_id,
                            num_batches)

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
