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


def frame_record(data):
    """One TFRecord: length header, its CRC, the payload, its CRC."""
    header = struct.pack("<Q", len(data))
    return b"".join((header, struct.pack("<I", masked_crc32c(header)), data,
                     struct.pack("<I", masked_crc32c(data))))


def varint(value):
    """Protobuf varint of one non-negative int (used for the few length prefixes per record)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_varint_rows(values):
    """Varint-encode every value of a 2-D int array at once.

    Returns ``(flat, row_lengths)``: the concatenated varint bytes of all rows in
    row-major order (uint8 array) and the byte length of each row. Negative
    int64 values take ten bytes (two's complement), as protobuf writes them.
    """
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    num_bytes = np.ones(unsigned.shape, dtype=np.int64)
    for k in range(1, 10):
        num_bytes += unsigned >= np.uint64(1 << (7 * k))
    width = int(num_bytes.max(initial=1))
    shifts = np.arange(width, dtype=np.uint64) * np.uint64(7)
    groups = ((unsigned[..., None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    byte_index = np.arange(width)
    groups[byte_index < (num_bytes - 1)[..., None]] |= 0x80
    flat = groups[byte_index < num_bytes[..., None]]
    return flat, num_bytes.sum(axis=1)


def _length_delimited(tag, payload):
    return b"".join((tag, varint(len(payload)), payload))


def _feature_map_entry(key, packed_values):
    int64_list = _length_delimited(_TAG_FIELD1, packed_values)
    feature = _length_delimited(_TAG_INT64_LIST, int64_list)
    entry = _length_delimited(_TAG_FIELD1, key) + _length_delimited(_TAG_FIELD2, feature)
    return _length_delimited(_TAG_FIELD1, entry)


def serialize_int64_examples(features):
    """Serialized ``tf.train.Example`` bytes, one per row of the equally long 2-D arrays.

    ``features`` maps feature name -> int array of shape (num_examples, length).
    Map entries are written in sorted key order (what protobuf's deterministic
    serialization does), so equal inputs always give equal bytes.
    """
    names = sorted(features)
    num_rows = {len(features[name]) for name in names}
    if len(num_rows) != 1:
        raise ValueError(f"features have different numbers of rows: {sorted(num_rows)}")
    encoded = []
    for name in names:
        flat, row_lengths = encode_varint_rows(features[name])
        offsets = np.concatenate(([0], np.cumsum(row_lengths))).tolist()
        encoded.append((name.encode("utf-8"), flat.tobytes(), offsets))
    records = []
    for row in range(num_rows.pop()):
        body = b"".join(_feature_map_entry(key, data[offsets[row]:offsets[row + 1]])
                        for key, data, offsets in encoded)
        records.append(_length_delimited(_TAG_FIELD1, body))
    return records


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

    def close(self):
        if self._gzip is not None:
            self._gzip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
