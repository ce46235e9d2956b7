"""electra_ko.storage: the same behaviour on local paths and on gs:// (emulator)."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from electra_ko import build_data, storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def test_json_round_trip_in_each_format(root):
    data = {"b": "한국어", "a": [1, 2.5, None]}
    path = storage.join(root, "sub", "data.json")
    storage.makedirs(storage.join(root, "sub"))
    text = storage.write_json(path, data)
    assert text == '{\n  "b": "한국어",\n  "a": [\n    1,\n    2.5,\n    null\n  ]\n}\n'
    assert storage.read_text(path) == text and storage.read_json(path) == data
    assert storage.write_json(path, data, indent=1, sort_keys=True, ensure_ascii=True,
                              newline=False) == json.dumps(data, indent=1, sort_keys=True)
    assert storage.read_json(path) == data


def test_read_json_names_the_place_of_bad_json_and_missing_files(root):
    path = storage.join(root, "bad.json")
    storage.write_text(path, '{"a": 1,\n oops}')

    class StageError(ValueError):
        pass

    with pytest.raises(StageError, match=r"^.*bad\.json:2:2: invalid JSON: Expecting property"):
        storage.read_json(path, StageError)
    for read in (storage.read_json, storage.read_text, storage.read_bytes, storage.size):
        with pytest.raises(FileNotFoundError):
            read(storage.join(root, "absent.json"))


def test_isdir_size_copy_and_local_copy(root, tmp_path):
    assert not storage.isdir(storage.join(root, "folder"))
    storage.makedirs(storage.join(root, "folder"))
    payload = bytes(range(256)) * 3
    with storage.atomic_writer(storage.join(root, "folder", "blob.bin"), binary=True) as f:
        f.write(payload)
    assert storage.isdir(storage.join(root, "folder"))
    assert not storage.isdir(storage.join(root, "folder", "blob.bin"))
    assert storage.size(storage.join(root, "folder", "blob.bin")) == len(payload)
    storage.copy(storage.join(root, "folder", "blob.bin"), storage.join(root, "copy.bin"))
    assert storage.read_bytes(storage.join(root, "copy.bin")) == payload
    storage.copy(storage.join(root, "copy.bin"), str(tmp_path / "local.bin"))
    assert (tmp_path / "local.bin").read_bytes() == payload
    with storage.local_copy(storage.join(root, "copy.bin")) as local:
        assert not storage.is_gcs(local) and os.path.basename(local) == "copy.bin"
        with open(local, "rb") as f:
            assert f.read() == payload
    assert os.path.exists(local) == (not storage.is_gcs(root))  # a temporary copy is gone
    with pytest.raises(RuntimeError):
        with storage.local_output(storage.join(root, "out.bin")) as local:
            with open(local, "wb") as f:
                f.write(payload)
            raise RuntimeError("the library failed")
    assert not storage.exists(storage.join(root, "out.bin"))
    with storage.local_output(storage.join(root, "out.bin")) as local:
        assert not storage.is_gcs(local)
        with open(local, "wb") as f:
            f.write(payload)
    assert storage.read_bytes(storage.join(root, "out.bin")) == payload
    assert not os.path.exists(local)


def assert_nothing_named_gs(*roots):
    """No file or folder under `roots` has "gs:" in its name: what a gs:// path handed to a
    local writer (`os.makedirs`, `open`) would leave."""
    for root in roots:
        for top, folders, files in os.walk(root):
            named = [name for name in folders + files if "gs:" in name]
            assert not named, f"{os.path.join(top, named[0])} on local disk"


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


def test_check_writable_refuses_outputs_that_cannot_be_written(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(storage.OutputError, match=f"^{a_file} is a file, but the output must "
                                                  "be a directory$"):
        storage.check_writable(str(a_file))
    with pytest.raises(storage.OutputError, match=f"^{tmp_path} is a directory, but the output "
                                                  "must be a file$"):
        storage.check_writable(str(tmp_path), kind="file")
    for kind in ("dir", "file"):
        with pytest.raises(storage.OutputError, match=f"^cannot create {a_file}/sub/out: {a_file} "
                                                      "is a file, not a directory$"):
            storage.check_writable(str(a_file / "sub" / "out"), kind)
    storage.check_writable(str(tmp_path / "new" / "out"))
    storage.check_writable(str(a_file), kind="file")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # the check creates nothing


def test_check_writable_needs_the_bucket_and_credentials(gcs_emulator, tmp_path, monkeypatch):
    storage.check_writable(f"gs://{gcs_emulator}/out")
    with pytest.raises(storage.OutputError, match="^cannot write gs://no-such-bucket/out: bucket "
                                                  "gs://no-such-bucket does not exist$"):
        storage.check_writable("gs://no-such-bucket/out")
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    monkeypatch.setattr(storage, "_client_cache", {})
    with pytest.raises(storage.OutputError, match=f"^cannot write gs://{gcs_emulator}/out: no "
                                                  "usable Google Cloud credentials"):
        storage.check_writable(f"gs://{gcs_emulator}/out")


# Each CLI's arguments up to its output flag: its inputs do not exist, so an error about the
# output shows that the output is checked first.
CLI_OUTPUTS = {
    "corpus": ["--input", "in.txt", "--output"],
    "vocab": ["--input", "in.txt", "--output_dir"],
    "build_data": ["--corpus", "in.txt", "--vocab", "vocab", "--output_dir"],
    "pretrain": ["--vocab_file", "vocab.txt", "--model_dir"],
    "finetune": ["--task", "nsmc", "--vocab", "vocab.txt", "--output_dir"],
    "leaderboard": ["--data_root", "data", "--output_dir"],
    "export": ["--model_dir", "model", "--output_dir"],
}


@pytest.mark.parametrize("stage", sorted(CLI_OUTPUTS))
def test_every_cli_refuses_an_output_under_a_file_before_reading_anything(stage, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    output = a_file / "out"
    result = subprocess.run([sys.executable, "-m", f"electra_ko.{stage}", *CLI_OUTPUTS[stage],
                             str(output)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"error: cannot create {output}: {a_file} is a file, not a directory")


def test_a_stage_refuses_a_missing_bucket_before_reading_anything(gcs_emulator, capsys):
    with pytest.raises(SystemExit):
        build_data.main(["--corpus", "in.txt", "--vocab", "vocab",
                         "--output_dir", "gs://no-such-bucket/shards"])
    assert capsys.readouterr().err.strip() == ("build_data: error: cannot write "
                                               "gs://no-such-bucket/shards: bucket "
                                               "gs://no-such-bucket does not exist")


def plant_temporaries(directory, names):
    """Leftovers of a killed run in ``directory``, an hour old: files, and folders (with a
    file inside) for the names ending in "/"."""
    past = time.time() - 3600
    for name in names:
        path = os.path.join(directory, name.rstrip("/"))
        if name.endswith("/"):
            os.makedirs(path)
            with open(os.path.join(path, "part"), "w") as f:
                f.write("partial")
        else:
            os.makedirs(directory, exist_ok=True)
            with open(path, "w") as f:
                f.write("partial")
        os.utime(path, (past, past))


def test_only_abandoned_temporaries_of_our_names_are_removed(tmp_path, caplog):
    out = str(tmp_path / "out.txt")
    plant_temporaries(str(tmp_path), [".out.txt.k1ll3d00.tmp", ".staging-k1ll3d00/",
                                      ".keep", ".notes.tmp", "out.txt.tmp", ".staging/"])
    (tmp_path / ".out.txt.y0ung000.tmp").write_text("seconds old, but nobody holds it")
    patterns = [storage.writer_temporaries("out.txt"), storage.STAGING_TEMPORARIES]
    with storage.atomic_writer(out) as f, storage.staged_output(str(tmp_path)) as staging:
        f.write("being written")
        writing = [name for name in os.listdir(tmp_path) if name.startswith(".out.txt.")
                   and name not in (".out.txt.k1ll3d00.tmp", ".out.txt.y0ung000.tmp")]
        past = time.time() - 3600
        for path in [str(tmp_path / writing[0]), staging]:
            os.utime(path, (past, past))  # old, but held by this live writer
        removed = storage.remove_stale_temporaries(str(tmp_path), patterns)
        assert removed == [".out.txt.k1ll3d00.tmp", ".out.txt.y0ung000.tmp", ".staging-k1ll3d00"]
        assert sorted(os.listdir(tmp_path)) == sorted(
            [".keep", ".notes.tmp", "out.txt.tmp", ".staging", writing[0],
             os.path.basename(staging)])
    assert (tmp_path / "out.txt").read_text() == "being written"
    assert f"removed what killed runs left in {tmp_path}: .out.txt.k1ll3d00.tmp, " \
           ".out.txt.y0ung000.tmp, .staging-k1ll3d00" in caplog.text
    assert storage.remove_stale_temporaries(str(tmp_path / "absent"), patterns) == []


def test_a_temporary_taken_by_a_clean_up_before_its_lock_is_created_again(tmp_path, monkeypatch):
    """The instant between creating a temporary and locking it: a clean-up that removes it
    then must not make the writer lose its output."""
    hold = storage._hold
    raced = []

    def clean_up_first(path):
        if not raced:
            raced.append(path)
            assert storage.remove_stale_temporaries(
                str(tmp_path), [storage.writer_temporaries("out.txt")]) == [os.path.basename(path)]
        return hold(path)
    monkeypatch.setattr(storage, "_hold", clean_up_first)
    with storage.atomic_writer(str(tmp_path / "out.txt")) as f:
        f.write("kept")
    assert raced and (tmp_path / "out.txt").read_text() == "kept"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_a_lock_holder_removes_temporaries_from_a_bucket(gcs_emulator):
    root = f"gs://{gcs_emulator}/{uuid.uuid4().hex}"
    names = ["ckpt-3_temp/part-00000-of-00002", "ckpt-3_temp/part-00001-of-00002",
             "checkpoint.tmp0a1b", "ckpt-2.index", "train/events", ".keep"]
    for name in names:
        storage.write_text(storage.join(root, name), "x")
    patterns = ["ckpt-*_temp", "checkpoint.tmp*"]
    assert storage.remove_stale_temporaries(root, patterns) == []  # not ours to judge unlocked
    assert storage.remove_stale_temporaries(root, patterns, owned=True) == [
        "checkpoint.tmp0a1b", "ckpt-3_temp"]
    assert storage.glob(root + "/*") == [storage.join(root, name) for name in
                                         (".keep", "ckpt-2.index", "train/events")]


def files_under(root):
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
    assert files_under(root) == ["README.md", "model/kept.txt", "new.txt"]
    assert storage.read_text(storage.join(root, "model", "kept.txt")) == "new"
