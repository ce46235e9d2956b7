"""electra_ko.storage: the same behaviour on local paths and on gs:// (emulator)."""
import os
import uuid

import pytest

from electra_ko import storage


@pytest.fixture(params=["local", "gcs"])
def root(request, tmp_path):
    """A fresh empty directory: a local temp dir or a unique prefix in the emulator bucket."""
    if request.param == "local":
        return str(tmp_path)
    bucket = request.getfixturevalue("gcs_emulator")
    return f"gs://{bucket}/{uuid.uuid4().hex}"


def _all_names(root):
    """Every entry under root, hidden temp files included (local glob would skip them)."""
    if storage.is_gcs(root):
        return storage.glob(storage.join(root, "*"))
    return os.listdir(root)


def test_text_round_trip_keeps_korean(root):
    path = storage.join(root, "sub", "note.txt")
    storage.makedirs(storage.join(root, "sub"))
    storage.write_text(path, "한국어 문장.\n둘째 줄\n")
    assert storage.exists(path)
    assert storage.read_text(path) == "한국어 문장.\n둘째 줄\n"
    with storage.open_read(path) as f:
        assert f.read().splitlines() == ["한국어 문장.", "둘째 줄"]


def test_binary_round_trip_and_seek(root):
    path = storage.join(root, "blob.bin")
    payload = bytes(range(256)) * 10
    with storage.atomic_writer(path, binary=True) as f:
        f.write(payload)
    with storage.open_read(path, binary=True) as f:
        f.seek(1000)
        assert f.read(24) == payload[1000:1024]


def test_failed_write_leaves_nothing(root):
    path = storage.join(root, "shard")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with storage.atomic_writer(path, binary=True) as f:
            f.write(b"half a shard")
            raise RuntimeError("disk on fire")
    assert not storage.exists(path)
    assert _all_names(root) == []


def test_writer_replaces_existing_file_only_on_success(root):
    path = storage.join(root, "a.txt")
    storage.write_text(path, "old")
    with pytest.raises(ValueError):
        with storage.atomic_writer(path) as f:
            f.write("new")
            raise ValueError
    assert storage.read_text(path) == "old"
    storage.write_text(path, "new")
    assert storage.read_text(path) == "new"


def test_glob_is_sorted_and_matches_pattern(root):
    for name in ["b.txt", "a.txt", "c.json", "a10.txt"]:
        storage.write_text(storage.join(root, name), name)
    found = storage.glob(storage.join(root, "*.txt"))
    assert found == [storage.join(root, n) for n in ["a.txt", "a10.txt", "b.txt"]]
    assert storage.glob(storage.join(root, "c.json")) == [storage.join(root, "c.json")]
    assert storage.glob(storage.join(root, "missing*")) == []


def test_remove_and_exists(root):
    path = storage.join(root, "gone.txt")
    storage.write_text(path, "x")
    storage.remove(path)
    assert not storage.exists(path)


def test_gcs_directory_exists_when_objects_below(gcs_emulator):
    root = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    assert not storage.exists(root)
    storage.write_text(storage.join(root, "x", "y.txt"), "y")
    assert storage.exists(root)
    assert storage.exists(storage.join(root, "x"))


def test_join_and_is_gcs():
    assert storage.is_gcs("gs://b/k") and not storage.is_gcs("/tmp/k")
    assert storage.join("gs://b/dir/", "/f.txt") == "gs://b/dir/f.txt"
    assert storage.join("/tmp", "a", "b") == "/tmp/a/b"


def test_gcs_path_without_bucket_is_rejected():
    with pytest.raises(ValueError, match="bucket"):
        storage.read_text("gs:///key")


def test_staged_output_publishes_whole_or_not_at_all(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("old")
    (out / "model").mkdir()
    (out / "model" / "stale.bin").write_text("old")
    with pytest.raises(RuntimeError):
        with storage.staged_output(str(out), last=("results.json",)) as stage:
            os.makedirs(os.path.join(stage, "model"))
            open(os.path.join(stage, "model", "weights.bin"), "w").write("new")
            raise RuntimeError("killed before results.json")
    assert (out / "results.json").read_text() == "old" and (out / "model" / "stale.bin").exists()
    with storage.staged_output(str(out), last=("results.json",)) as stage:
        os.makedirs(os.path.join(stage, "model"))
        open(os.path.join(stage, "model", "weights.bin"), "w").write("new")
        open(os.path.join(stage, "results.json"), "w").write("new")
    assert (out / "results.json").read_text() == "new"
    assert sorted(p.name for p in (out / "model").iterdir()) == ["weights.bin"]  # replaced whole
    assert sorted(p.name for p in out.iterdir()) == ["model", "results.json"]  # no staging left


def _files_under(root):
    """Relative paths of every file under root (gs://: every object)."""
    if storage.is_gcs(root):
        return sorted(path[len(root) + 1:] for path in storage.glob(storage.join(root, "*")))
    return sorted(os.path.relpath(os.path.join(top, name), root)
                  for top, _, names in os.walk(root) for name in names)


def test_staged_output_leaves_no_earlier_file_of_the_writer(root):
    """Owned names the new run did not write go, folders it wrote replace the old ones
    whole (gs:// too), and a file nobody owns stays."""
    for name in ("old.bin", "stale/a.txt", "model/stale.bin", "model/kept.txt", "README.md"):
        storage.makedirs(os.path.dirname(storage.join(root, name)))
        storage.write_text(storage.join(root, name), "old")
    with storage.staged_output(root, owned=("old.bin", "stale", "new.txt")) as stage:
        os.makedirs(os.path.join(stage, "model"))
        for name in ("new.txt", "model/kept.txt"):
            with open(os.path.join(stage, name), "w") as f:
                f.write("new")
    assert _files_under(root) == ["README.md", "model/kept.txt", "new.txt"]
    assert storage.read_text(storage.join(root, "model", "kept.txt")) == "new"
