"""One file API for local paths and ``gs://bucket/key`` paths, shared by every stage.

Local paths go through the standard library. ``gs://`` paths go through
google-cloud-storage: the client is created lazily (so importing this module costs
nothing and forked worker processes build their own), honours
``STORAGE_EMULATOR_HOST`` (tests run against gcp-storage-emulator) and every call
retries transient errors with the library's ``DEFAULT_RETRY``.

Every path a user gives (an input or an output, local or ``gs://``) goes through this
module; so do JSON files (``read_json``, ``write_json``: one reader, one writer). Code
that hands a path to a library which only handles local files uses ``staged_output`` (a
folder) or ``local_output`` (a file) to write, ``local_copy`` to read; TensorFlow's own
formats (``tf.data`` records, checkpoints, summaries, SavedModels) are read and written by
TensorFlow, which opens gs:// itself.

Writers are atomic: a file appears under its final name only once it is complete
(local: temporary file in the same directory + ``os.replace``; gs://: one upload
when the writer closes without error). A writer holds an advisory lock on its
temporary, so the next run of a stage can tell a killed writer's leftovers from a
live one's (``remove_stale_temporaries``). No TensorFlow here: the data builder must
stay light.
"""
import contextlib
import fcntl
import fnmatch
import glob as _glob
import json
import os
import re
import shutil
import tempfile

from absl import logging

GCS_PREFIX = "gs://"
_WILDCARD = re.compile(r"[*?\[]")
_client_cache = {}


class OutputError(ValueError):
    """An output location no stage could write to (the message names it)."""


def is_gcs(path):
    """True for ``gs://`` paths."""
    return str(path).startswith(GCS_PREFIX)


def join(base, *parts):
    """``os.path.join`` for local paths, ``/``-joining for gs:// keys."""
    if not is_gcs(base):
        return os.path.join(base, *parts)
    path = base
    for part in parts:
        path = path.rstrip("/") + "/" + part.lstrip("/")
    return path


def _split_gcs(path):
    """``gs://bucket/a/b`` -> ``("bucket", "a/b")``."""
    bucket, _, key = path[len(GCS_PREFIX):].partition("/")
    if not bucket:
        raise ValueError(f"{path!r}: a gs:// path needs a bucket name")
    return bucket, key


def _client():
    """The storage client of this process, created on first use.

    Keyed by process id (a client must not cross a fork) and emulator host (tests
    point it at a fresh emulator).
    """
    from google.cloud import storage as gcs

    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    key = (os.getpid(), emulator)
    if key not in _client_cache:
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            project = os.environ.get("GOOGLE_CLOUD_PROJECT", "electra-ko-emulator")
            _client_cache[key] = gcs.Client(project=project, credentials=AnonymousCredentials())
        else:
            _client_cache[key] = gcs.Client()
    return _client_cache[key]


def _retry():
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


def _blob(path):
    bucket, key = _split_gcs(path)
    if not key:
        raise ValueError(f"{path!r}: a gs:// file path needs a key after the bucket")
    return _client().bucket(bucket).blob(key)


def exists(path):
    """True if the file exists, or (gs://) any object lives under ``path/``."""
    if not is_gcs(path):
        return os.path.exists(path)
    _, key = _split_gcs(path)
    return bool(key and _blob(path).exists(retry=_retry())) or isdir(path)


def isdir(path):
    """True for a local directory, or (gs://, which has no directories) when any object
    lives under ``path/``."""
    if not is_gcs(path):
        return os.path.isdir(path)
    bucket, key = _split_gcs(path)
    prefix = key.rstrip("/") + "/" if key else ""
    blobs = _client().list_blobs(bucket, prefix=prefix, max_results=1, retry=_retry())
    return any(True for _ in blobs)


def size(path):
    """The file's size in bytes; a missing file is ``FileNotFoundError`` (gs:// too)."""
    if not is_gcs(path):
        return os.path.getsize(path)
    bucket, key = _split_gcs(path)
    blob = _client().bucket(bucket).get_blob(key, retry=_retry()) if key else None
    if blob is None:
        raise FileNotFoundError(f"{path}: no such object")
    return blob.size


def glob(pattern):
    """Sorted paths matching ``pattern`` (``*``, ``?``, ``[...]``; on gs:// ``*`` also crosses ``/``)."""
    if not is_gcs(pattern):
        return sorted(_glob.glob(pattern))
    bucket, key = _split_gcs(pattern)
    wildcard = _WILDCARD.search(key)
    if wildcard is None:
        return [pattern] if key and _blob(pattern).exists(retry=_retry()) else []
    prefix = key[: wildcard.start()]
    names = (b.name for b in _client().list_blobs(bucket, prefix=prefix, retry=_retry()))
    return sorted(f"{GCS_PREFIX}{bucket}/{name}" for name in names if fnmatch.fnmatchcase(name, key))


def check_writable(path, kind="dir"):
    """Refuse, at a stage's start and before any long work, an output ``path`` (a ``kind``
    "dir" or "file") that could not be written: locally an entry of the other kind, a
    file where a parent folder must go, or no write permission; on gs:// a bucket that
    does not exist or cannot be listed with the credentials at hand. Creates nothing."""
    if is_gcs(path):
        _check_bucket(path)
        return
    if kind == "dir" and os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{path} is a file, but the output must be a directory")
    if kind == "file" and os.path.isdir(path):
        raise OutputError(f"{path} is a directory, but the output must be a file")
    existing = os.path.abspath(path if kind == "dir" else os.path.dirname(os.path.abspath(path)))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputError(f"cannot create {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: {existing} is not writable")


def _check_bucket(path):
    """One listing of the bucket: it exists and the credentials may read it."""
    from google.api_core import exceptions
    from google.auth.exceptions import GoogleAuthError

    bucket, _ = _split_gcs(path)
    try:
        next(iter(_client().list_blobs(bucket, max_results=1, retry=_retry())), None)
    except GoogleAuthError as e:
        raise OutputError(f"cannot write {path}: no usable Google Cloud credentials "
                          f"({str(e).splitlines()[0]}); run `gcloud auth application-default "
                          "login` or set GOOGLE_APPLICATION_CREDENTIALS") from None
    except exceptions.NotFound:
        raise OutputError(f"cannot write {path}: bucket gs://{bucket} does not exist") from None
    except exceptions.Forbidden:
        raise OutputError(f"cannot write {path}: the credentials may not list "
                          f"gs://{bucket}") from None


def open_read(path, binary=False):
    """Open for reading; text mode decodes UTF-8. gs:// readers are seekable."""
    if not is_gcs(path):
        return open(path, "rb") if binary else open(path, encoding="utf-8")
    blob = _blob(path)
    if binary:
        return blob.open("rb", retry=_retry())
    return blob.open("rt", encoding="utf-8", retry=_retry())


@contextlib.contextmanager
def atomic_writer(path, binary=False):
    """Yield a writable file that appears as ``path`` only if the block finishes without error."""
    directory = os.path.dirname(path) if not is_gcs(path) else None
    tmp, lock = _new_held_temporary(lambda: tempfile.NamedTemporaryFile(
        mode="wb" if binary else "w",
        encoding=None if binary else "utf-8",
        dir=directory or None,
        prefix="." + os.path.basename(path) + ".",
        suffix=_WRITER_SUFFIX,
        delete=False,
    ), lambda tmp: tmp.name)
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        if is_gcs(path):
            _blob(path).upload_from_filename(tmp.name, retry=_retry())
        else:
            os.chmod(tmp.name, 0o666 & ~_current_umask())
            os.replace(tmp.name, path)
    finally:
        os.close(lock)
        if os.path.exists(tmp.name):
            os.remove(tmp.name)


_WRITER_SUFFIX = ".tmp"


def writer_temporaries(name):
    """The glob pattern of the temporary files ``atomic_writer`` makes for files called
    ``name`` (itself a pattern) until it renames them."""
    return f".{name}.*{_WRITER_SUFFIX}"


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text):
    """Atomically write a UTF-8 text file."""
    with atomic_writer(path) as f:
        f.write(text)


def read_text(path):
    """The whole file as text (UTF-8); a missing file is ``FileNotFoundError`` (gs:// too)."""
    if is_gcs(path):
        return read_bytes(path).decode("utf-8")
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_bytes(path):
    """The whole file as bytes; a missing file is ``FileNotFoundError`` (gs:// too)."""
    if not is_gcs(path):
        with open(path, "rb") as f:
            return f.read()
    from google.api_core.exceptions import NotFound

    try:
        return _blob(path).download_as_bytes(retry=_retry())
    except NotFound:
        raise FileNotFoundError(f"{path}: no such object") from None


def read_json(path, error=ValueError):
    """The JSON value a file holds. A missing file is ``FileNotFoundError``; a file that is
    not JSON is ``error`` (each stage passes its own class) naming the path, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None


def json_text(data, indent=2, sort_keys=False, ensure_ascii=False, newline=True, default=None):
    """``data`` as JSON text: by default 2-space indents, non-ASCII characters as they are
    and a final newline. The callers that differ keep the bytes their files always had
    (a manifest's 1-space indent, a run's config.json's sorted ASCII keys, results.json
    without a final newline)."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                      default=default)
    return text + "\n" if newline else text


def write_json(path, data, **options):
    """Atomically write ``data`` as JSON (``json_text(data, **options)``); returns the text."""
    text = json_text(data, **options)
    write_text(path, text)
    return text


def copy(source, destination):
    """Copy one file, either end local or gs:// (written atomically, as every writer here)."""
    with open_read(source, binary=True) as src, atomic_writer(destination, binary=True) as dst:
        shutil.copyfileobj(src, dst)


@contextlib.contextmanager
def local_output(path):
    """A local file name for a library that writes only local files (safetensors'
    ``save_file``): what it writes there appears as ``path`` (local or gs://) when the block
    ends without error, atomically, as ``atomic_writer``'s output does."""
    with atomic_writer(path, binary=True) as f:
        yield f.name


@contextlib.contextmanager
def local_copy(path):
    """A local path with the file's content, for libraries that read only local files
    (safetensors, torch.load): ``path`` itself when local; for gs://, a temporary copy
    (under its own name), removed when the block ends."""
    if not is_gcs(path):
        yield path
        return
    with tempfile.TemporaryDirectory() as local:
        target = os.path.join(local, path.rstrip("/").rsplit("/", 1)[-1])
        copy(path, target)
        yield target


def makedirs(path):
    """Create a local directory tree; gs:// has no directories, so nothing to do."""
    if not is_gcs(path):
        os.makedirs(path, exist_ok=True)


def remove(path):
    """Delete one file or object."""
    if is_gcs(path):
        _blob(path).delete(retry=_retry())
    else:
        os.remove(path)


def remove_tree(path):
    """Delete a file or a folder with everything in it (gs://: the object ``path`` and every
    object under ``path/``); nothing to do if there is none."""
    if not is_gcs(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    bucket, key = _split_gcs(path)
    key = key.rstrip("/")
    if not key:
        raise ValueError(f"{path!r}: remove_tree needs a key after the bucket")
    for blob in _client().list_blobs(bucket, prefix=key, retry=_retry()):
        if blob.name == key or blob.name.startswith(key + "/"):
            blob.delete(retry=_retry())


@contextlib.contextmanager
def staged_output(output_dir, last=(), owned=()):
    """A local folder to write ``output_dir``'s files into, published only when the block
    finishes without error, so a killed or failed run never leaves new files beside old
    ones: for gs://, a temporary folder uploaded file by file (sub-folders too); locally,
    a hidden folder inside ``output_dir`` (same file system, so entries move by rename, and
    writable wherever the output is, e.g. a container's mounted volume) whose entries then
    replace ``output_dir``'s of the same name, the names in ``last`` (e.g. results.json)
    removed first and published last. A folder it holds replaces the old one whole, and
    the names in ``owned`` (every top-level file or folder the writer may write) that it
    does not hold are removed, so no earlier run's file stays beside the new ones; other
    names (a user's README.md) stay. Nothing named ``gs:`` ever appears on local disk."""
    if is_gcs(output_dir):
        with tempfile.TemporaryDirectory() as local:
            yield local
            upload_dir(local, output_dir, last, owned)
        return
    os.makedirs(output_dir, exist_ok=True)
    staging, lock = _new_held_temporary(
        lambda: tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir), lambda path: path)
    try:
        yield staging
        _publish_local(staging, output_dir, last, owned)
    finally:
        os.close(lock)
        shutil.rmtree(staging, ignore_errors=True)


STAGING_PREFIX = ".staging-"
STAGING_TEMPORARIES = STAGING_PREFIX + "*"  # what staged_output leaves in a killed run's output


def _publish_local(staging, output_dir, last, owned):
    staged = os.listdir(staging)
    for name in sorted(set(last) | (set(owned) - set(staged))):
        remove_tree(os.path.join(output_dir, name))
    for name in sorted(staged, key=lambda name: name in last):
        target = os.path.join(output_dir, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        os.replace(os.path.join(staging, name), target)


def upload_dir(local_dir, target, last=(), owned=()):
    """Copy every file under ``local_dir`` to the same relative path under ``target``;
    the top-level names in ``last`` go last. Removed from ``target`` first: the folders
    ``local_dir`` holds and the names in ``last`` and ``owned``, so an interrupted upload
    leaves files missing, never old ones beside new ones."""
    folders = {name for name in os.listdir(local_dir)
               if os.path.isdir(os.path.join(local_dir, name))}
    for name in sorted(folders | set(last) | set(owned)):
        remove_tree(join(target, name))
    files = sorted((os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/")
                    for root, _, names in os.walk(local_dir) for name in names),
                   key=lambda relative: relative in last)
    for relative in files:
        destination, source = join(target, relative), os.path.join(local_dir, relative)
        if is_gcs(destination):
            _blob(destination).upload_from_filename(source, retry=_retry())
        else:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copyfile(source, destination)


def final_path(path, staged_dir, output_dir):
    """Where ``path``, written under ``staged_dir``, lands under ``output_dir``."""
    relative = os.path.relpath(path, staged_dir).replace(os.sep, "/")
    return output_dir if relative == "." else join(output_dir, relative)


def create_exclusive(path, text):
    """Write ``text`` to ``path`` only if it does not exist yet; False if it does. Atomic on
    local disks (O_EXCL) and on GCS (an upload conditional on no live object)."""
    if is_gcs(path):
        from google.api_core.exceptions import PreconditionFailed

        try:
            _blob(path).upload_from_string(text.encode("utf-8"), if_generation_match=0)
        except PreconditionFailed:
            return False
        return True
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def _hold(path):
    """An advisory lock on the temporary ``path`` for its writer's life: the system drops it
    when the process dies, so a temporary that nobody holds was left by a killed run. Returns
    the locked descriptor, or None when a clean-up (`_remove_if_abandoned`) took the
    temporary in the instant between its creation and this lock: create another. (Where the
    file system has no such locks, nothing is held and nothing is ever found stale.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_EX)
    if os.fstat(fd).st_nlink == 0:
        os.close(fd)
        return None
    return fd


def _new_held_temporary(create, path_of):
    """``create()`` a temporary and `_hold` it; returns (temporary, locked descriptor)."""
    while True:
        temporary = create()
        fd = _hold(path_of(temporary))
        if fd is not None:
            return temporary, fd


def _remove_if_abandoned(path):
    """Remove a local temporary that no process holds, holding its lock meanwhile, so that
    a writer which has just created it finds it gone (`_hold`) instead of losing its
    output; returns whether it was removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # gone meanwhile
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by a live writer, or no locks here to tell
        os.close(fd)
        return False
    try:
        _remove_local(path)
        return True
    finally:
        os.close(fd)


def remove_stale_temporaries(directory, patterns, owned=False):
    """Remove from ``directory`` the temporaries killed runs left there: the entries whose
    names match ``patterns`` (this project's or TensorFlow's temporary names, never a
    user's) and that no running process is writing. A caller that holds the directory's
    lock passes ``owned``: every match is then stale, on gs:// too. Otherwise only local
    temporaries are removed, those that no process holds (``_hold``); our writers stage
    gs:// outputs in local temporaries, so they leave none in a bucket. Logs one line
    naming what it removed; returns the names."""
    if is_gcs(directory):
        stale = _gcs_entries(directory, patterns) if owned else {}
        for paths in stale.values():
            for path in paths:
                _blob(path).delete(retry=_retry())
    else:
        names = os.listdir(directory) if os.path.isdir(directory) else []
        stale = [name for name in names if _matches(name, patterns) and (
            _remove_local(os.path.join(directory, name)) if owned
            else _remove_if_abandoned(os.path.join(directory, name)))]
    if stale:
        logging.warning("removed what killed runs left in %s: %s", directory,
                        ", ".join(sorted(stale)))
    return sorted(stale)


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _gcs_entries(directory, patterns):
    """``{name: object paths}`` of the entries directly in a gs:// directory whose names
    match ``patterns`` (a sub-folder holds every object under it)."""
    bucket, key = _split_gcs(directory)
    prefix = key.rstrip("/") + "/" if key else ""
    entries = {}
    for blob in _client().list_blobs(bucket, prefix=prefix, retry=_retry()):
        name = blob.name[len(prefix):].split("/", 1)[0]
        if _matches(name, patterns):
            entries.setdefault(name, []).append(f"{GCS_PREFIX}{bucket}/{blob.name}")
    return entries


def _remove_local(path):
    """Delete a file or folder that a concurrent clean-up may be deleting too; True."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    return True
