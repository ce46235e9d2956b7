"""The pretraining shard format, for its writer (`electra_ko.build_data`) and its reader
(`electra_ko.data`) alike: file names, manifest, features. No TensorFlow here.

An output folder holds

    pretrain_data.tfrecord-00000-of-00008[.gz]   TFRecord files of `tf.train.Example`s
                                                 (`electra_ko.tfrecord` frames them), one
                                                 per packed example: the int64 features
                                                 `FEATURES`, each `max_seq_length` long
                                                 (google-research/electra's layout); `.gz`:
                                                 one GZIP stream
    manifest.json                                written last, when every shard exists
    manifest.partial.json                        while a build runs (what a re-run resumes)

A manifest holds the build settings (`max_seq_length`, `seed`, `vocab_sha256`,
`vocab_size`, `num_shards`, `compression`, `corpus`), `command`, `complete`, `shards` (one
entry per shard, `shard_entry`'s keys plus `bad_lines`; null for a shard not built yet)
and the totals `examples`, `tokens`, `skipped_lines`.
"""
from electra_ko import tfrecord

SHARD_PREFIX = "pretrain_data.tfrecord"
SHARD_PATTERN = SHARD_PREFIX + "-*"  # every shard, compressed or not
MANIFEST = "manifest.json"
PARTIAL_MANIFEST = "manifest.partial.json"
INPUT_IDS, INPUT_MASK, SEGMENT_IDS = "input_ids", "input_mask", "segment_ids"
FEATURES = (INPUT_IDS, INPUT_MASK, SEGMENT_IDS)
GZIP = tfrecord.GZIP  # the manifest's `compression`, and TensorFlow's name for it
GZIP_SUFFIX = ".gz"
# What a reader checks against the model: shards of another vocab or length are refused.
MODEL_KEYS = ("vocab_sha256", "vocab_size", "max_seq_length")
_COMPRESSIONS = {"": "", "NONE": "", GZIP: GZIP, "GZ": GZIP}  # manifest value -> TFRecord type


def shard_name(index, num_shards, compression):
    """The file name of shard `index` of `num_shards` (`compression`: "" or `GZIP`)."""
    suffix = GZIP_SUFFIX if compression == GZIP else ""
    return f"{SHARD_PREFIX}-{index:05d}-of-{num_shards:05d}{suffix}"


def shard_index(name):
    """The index in a shard's file name (`shard_name`'s inverse)."""
    return int(name[len(SHARD_PREFIX) + 1:].split("-of-")[0])


def shard_entry(name):
    """A manifest's entry for one shard, before any example is written."""
    return {"file": name, "examples": 0, "tokens": 0, "documents": 0, "lines": 0,
            "skipped_lines": 0}


def make_manifest(settings, entries, command, complete):
    """The manifest of a build: `settings`, one entry (or None) per shard, the totals."""
    finished = [entry for entry in entries if entry]
    return dict(settings, command=command, complete=complete, shards=list(entries),
                examples=sum(e["examples"] for e in finished),
                tokens=sum(e["tokens"] for e in finished),
                skipped_lines=sum(e["skipped_lines"] for e in finished))


def compression_of(manifest):
    """The TFRecord compression type ("GZIP" or "") a manifest declares; None for a value
    no reader knows."""
    return _COMPRESSIONS.get((manifest.get("compression") or "").upper())


def recorded_counts(manifest):
    """``{shard file name: examples}`` from the manifest's `shards` entries (build_data
    writes them; other manifests may have none)."""
    return {entry["file"]: int(entry["examples"]) for entry in manifest.get("shards") or []
            if entry and "file" in entry and "examples" in entry}
