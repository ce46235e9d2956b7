"""TFRecord files of ``tf.train.Example`` protos, written without TensorFlow.

Importing TensorFlow costs ~4 s and ~650 MB per process, too much for the data
builder's worker processes, and the format is small: each record is

    uint64 length | masked crc32c(length) | data | masked crc32c(data)

(little-endian), and an Example holding only int64 lists is a few nested
length-delimited protobuf fields around packed varints. The varints of a whole
batch of examples are encoded at once with NumPy.
"""
import gzip
import struct

import google_crc32c
import numpy as np

_CRC_MASK_DELTA = 0xA282EAD8
_UINT32 = 0xFFFFFFFF
# protobuf tags: (field number << 3) | wire type 2 (length-delimited)
_TAG_FIELD1 = b"\x0a"  # Example.features, Features.feature (map entry), entry key, Int64List.value
_TAG_FIELD2 = b"\x12"  # map entry value
_TAG_INT64_LIST = b"\x1a"  # Feature.int64_list is field 3
GZIP = "GZIP"
_GZIP_LEVEL = 6  # zlib's default, as TensorFlow's own writer


def masked_crc32c(data):
    """CRC32C rotated and offset as TFRecord framing requires (guards against CRCs of CRCs)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _CRC_MASK_DELTA) & _UINT32


def encode_varint_rows(values):
    """Varint-encode every value of a 2-D int array at once.

    Returns ``(flat, row_lengths)``: the concatenated varint bytes of all rows in
    row-major order (uint8 array) and the byte length of each row. Negative
    int64 values take ten bytes (two's complement), as protobuf writes them.
    """
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    width = max(1, (int(unsigned.max(initial=0)).bit_length() + 6) // 7)
    if width == 1:
        return unsigned.astype(np.uint8).ravel(), np.full(len(unsigned), unsigned.shape[1])
    num_bytes = np.ones(unsigned.shape, dtype=np.int64)
    for k in range(1, width):
        num_bytes += unsigned >= np.uint64(1 << (7 * k))
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((unsigned[..., None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    byte_index = np.arange(width)
    groups[byte_index < (num_bytes - 1)[..., None]] |= 0x80
    flat = groups[byte_index < num_bytes[..., None]]
    return flat, num_bytes.sum(axis=1)


def _varint_column(lengths):
    """A column of one varint per row."""
    return encode_varint_rows(np.asarray(lengths, dtype=np.int64)[:, None])


def _constant_column(data, num_rows):
    return (np.tile(np.frombuffer(data, dtype=np.uint8), num_rows),
            np.full(num_rows, len(data), dtype=np.int64))


def _fixed_column(values, dtype):
    """Little-endian fixed-width integers, one per row."""
    data = np.ascontiguousarray(values, dtype=dtype).view(np.uint8)
    return data, np.full(len(values), np.dtype(dtype).itemsize, dtype=np.int64)


def _ragged_positions(starts, counts):
    before = np.cumsum(counts) - counts
    return np.repeat(starts - before, counts) + np.arange(int(counts.sum()))


def _join_columns(columns):
    """Row ``r`` of the result is the concatenation of every column's row ``r``.

    A column is ``(flat bytes, byte length per row)``. Returns the joined bytes
    (uint8) and the byte offset of each row (one more than rows).
    """
    lengths = np.stack([row_lengths for _, row_lengths in columns], axis=1)
    ends = np.cumsum(lengths.ravel()).reshape(lengths.shape)
    out = np.empty(int(ends[-1, -1]) if len(ends) else 0, dtype=np.uint8)
    for column, (flat, _) in enumerate(columns):
        out[_ragged_positions(ends[:, column] - lengths[:, column], lengths[:, column])] = flat
    return out, np.concatenate(([0], ends[:, -1]))


def _varint_size(values):
    size = np.ones_like(values)
    for k in range(1, 10):
        size += values >= (1 << (7 * k))
    return size


def _example_columns(features):
    """``tf.train.Example`` protos of every row, as columns of bytes.

    Map entries come in sorted key order (what protobuf's deterministic
    serialization does), so equal inputs always give equal bytes. Per feature the
    nesting is: Features.feature entry > (key, Feature > Int64List > packed values).
    """
    names = sorted(features)
    num_rows = {len(features[name]) for name in names}
    if len(num_rows) != 1:
        raise ValueError(f"features have different numbers of rows: {sorted(num_rows)}")
    num_rows = num_rows.pop()
    columns, body_length = [], 0
    for name in names:
        key = name.encode("utf-8")
        values, packed = encode_varint_rows(features[name])
        int64_list = 1 + _varint_size(packed) + packed
        feature = 1 + _varint_size(int64_list) + int64_list
        entry = 1 + len(varint(len(key))) + len(key) + 1 + _varint_size(feature) + feature
        columns += [_constant_column(_TAG_FIELD1, num_rows), _varint_column(entry),
                    _constant_column(_TAG_FIELD1 + varint(len(key)) + key + _TAG_FIELD2, num_rows),
                    _varint_column(feature), _constant_column(_TAG_INT64_LIST, num_rows),
                    _varint_column(int64_list), _constant_column(_TAG_FIELD1, num_rows),
                    _varint_column(packed), (values, packed)]
        body_length = body_length + 1 + _varint_size(entry) + entry
    return [_constant_column(_TAG_FIELD1, num_rows), _varint_column(body_length)] + columns


def serialize_int64_examples(features):
    """Serialized ``tf.train.Example`` bytes, one per row of the equally long 2-D arrays.

    ``features`` maps feature name -> int array of shape (num_examples, length).
    """
    data, offsets = _join_columns(_example_columns(features))
    return [data[start:end].tobytes() for start, end in zip(offsets[:-1], offsets[1:])]


def frame_examples(features):
    """The TFRecord file bytes of one Example per row (see ``serialize_int64_examples``)."""
    data, offsets = _join_columns(_example_columns(features))
    lengths = np.diff(offsets)
    records = data.tobytes()
    data_crcs = [masked_crc32c(records[start:end]) for start, end in
                 zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    header_crcs = {n: masked_crc32c(struct.pack("<Q", n)) for n in set(lengths.tolist())}
    framed, _ = _join_columns([
        _fixed_column(lengths, "<u8"),
        _fixed_column([header_crcs[n] for n in lengths.tolist()], "<u4"),
        (data, lengths), _fixed_column(data_crcs, "<u4")])
    return framed.tobytes()


def frame_record(data):
    """One TFRecord: length header, its CRC, the payload, its CRC."""
    header = struct.pack("<Q", len(data))
    return b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                     struct.pack("<I", masked_crc32c(data))))


def varint(value):
    """Protobuf varint of one non-negative int (for the constant key prefixes)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class RecordWriter:
    """Appends framed records to an open binary file, optionally as one gzip stream.

    The gzip header carries no file name or time stamp, so output bytes depend on
    the records alone. Closing the writer does not close the underlying file.
    """

    def __init__(self, fileobj, compression=""):
        if compression not in ("", GZIP):
            raise ValueError(f"compression must be '' or {GZIP!r}, not {compression!r}")
        self._gzip = None
        if compression == GZIP:
            self._gzip = gzip.GzipFile(fileobj=fileobj, mode="wb", filename="", mtime=0,
                                       compresslevel=_GZIP_LEVEL)
        self._out = self._gzip or fileobj

    def write(self, records):
        self._out.write(b"".join(frame_record(record) for record in records))

    def write_examples(self, features):
        """One ``tf.train.Example`` per row of the int feature arrays, framed at once."""
        self._out.write(frame_examples(features))

    def close(self):
        if self._gzip is not None:
            self._gzip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
