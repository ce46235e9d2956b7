"""The TFRecord writer (electra_ko.tfrecord, no TensorFlow): examples serialise, frame and
compress byte for byte as TensorFlow's own, and TensorFlow reads them back."""
import numpy as np
import pytest

from electra_ko import tfrecord


@pytest.fixture(scope="module")
def tf():
    """TensorFlow, imported by the tests that compare with it (the writer must not need it)."""
    import tensorflow

    return tensorflow


def test_examples_serialize_like_tensorflow(tf):
    rng = np.random.default_rng(0)
    features = {"input_ids": rng.integers(0, 40000, size=(4, 9)),
                "input_mask": rng.integers(0, 2, size=(4, 9)),
                "segment_ids": np.array([[0, 1, 127, 128, 16383, 16384, 2**40, -1, -(2**63)]] * 4)}
    ours = tfrecord.serialize_int64_examples(features)
    for row, record in enumerate(ours):
        theirs = tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(int64_list=tf.train.Int64List(value=values[row].tolist()))
            for name, values in features.items()}))
        assert record == theirs.SerializeToString(deterministic=True)


def test_token_id_batches_serialize_and_frame_like_tensorflow(tf, tmp_path):
    """A batch big enough for the varint table path; framed records read back by TF."""
    rng = np.random.default_rng(1)
    features = {"input_ids": rng.integers(0, 3000, size=(64, 128)),
                "input_mask": rng.integers(0, 2, size=(64, 128)),
                "segment_ids": rng.integers(0, 2, size=(64, 128))}
    features["input_ids"][0, :4] = [0, 127, 128, 2999]  # 1-, 1-, 2- and 2-byte varints
    ours = tfrecord.serialize_int64_examples(features)
    for row in (0, 1, 63):
        theirs = tf.train.Example(features=tf.train.Features(feature={
            name: tf.train.Feature(int64_list=tf.train.Int64List(value=values[row].tolist()))
            for name, values in features.items()}))
        assert ours[row] == theirs.SerializeToString(deterministic=True)
    path = tmp_path / "examples.tfrecord"
    path.write_bytes(tfrecord.frame_examples(features))
    assert path.read_bytes() == b"".join(tfrecord.frame_record(record) for record in ours)
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    assert read == ours


def test_framing_no_examples_gives_no_bytes():
    assert tfrecord.frame_examples({"input_ids": np.zeros((0, 8), dtype=np.int64)}) == b""


@pytest.mark.parametrize("compression", ["", tfrecord.GZIP])
def test_record_files_read_by_tensorflow(tf, tmp_path, compression):
    records = [b"", b"x", bytes(range(256)) * 40]
    path = tmp_path / "records"
    with open(path, "wb") as f, tfrecord.RecordWriter(f, compression) as writer:
        writer.write(records)
    read = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type=compression)]
    assert read == records
