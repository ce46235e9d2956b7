"""electra_ko.shards: the shard format both the writer and the reader take from it."""
import fnmatch
import subprocess
import sys

from electra_ko import shards


def test_shard_names_are_google_research_electras_and_read_back():
    assert shards.shard_name(3, 8, "") == "pretrain_data.tfrecord-00003-of-00008"
    assert shards.shard_name(0, 2, shards.GZIP) == "pretrain_data.tfrecord-00000-of-00002.gz"
    for compression in ("", shards.GZIP):
        name = shards.shard_name(17, 20, compression)
        assert shards.shard_index(name) == 17
        assert fnmatch.fnmatchcase(name, shards.SHARD_PATTERN)


def test_compression_of_accepts_what_manifests_say():
    for value, expected in [(None, ""), ("", ""), ("none", ""), ("GZIP", shards.GZIP),
                            ("gzip", shards.GZIP), ("gz", shards.GZIP), ("zstd", None)]:
        assert shards.compression_of({"compression": value}) == expected, value
    assert shards.compression_of({}) == ""


def test_manifest_totals_and_recorded_counts():
    first = dict(shards.shard_entry(shards.shard_name(0, 2, "")), examples=3, tokens=30)
    manifest = shards.make_manifest({"num_shards": 2}, [first, None], "cmd", complete=False)
    assert (manifest["examples"], manifest["tokens"], manifest["skipped_lines"]) == (3, 30, 0)
    assert manifest["shards"] == [first, None] and manifest["complete"] is False
    assert shards.recorded_counts(manifest) == {first["file"]: 3}
    assert shards.recorded_counts({}) == {}


def test_the_format_module_imports_no_tensorflow():
    code = "import sys, electra_ko.shards; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
