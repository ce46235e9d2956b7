"""Pretraining TFRecord shards from a corpus: ``python -m electra_ko.build_data``.

The corpus holds one sentence per line and a blank line between documents.
Examples are packed exactly as google-research/electra's
``build_pretraining_dataset.py`` packs them (same feature names and layout), so
either tool's shards feed either trainer.

Determinism: the corpus is cut into ``--num_shards`` byte ranges at document
boundaries, and each shard's random choices come from its own RNG seeded with
(seed, shard index). A shard's bytes therefore depend on the corpus, vocab, seed
and settings only, never on ``--num_workers``; workers build whole shards.

Safety: every shard is written through ``storage.atomic_writer``, so it appears
under its final name only when complete. ``manifest.partial.json`` records the
settings and each finished shard as the run goes; a re-run skips the recorded
shards. ``manifest.json`` is written last, when all shards exist.
"""
import dataclasses
import io
import multiprocessing
import os
import queue
import random
import shlex
import sys
import time

import tqdm
from absl import flags

from electra_ko import shards, storage, tfrecord, vocab
from electra_ko.packing import ExamplePacker, examples_to_features
from electra_ko.shards import MANIFEST, PARTIAL_MANIFEST, SHARD_PATTERN, SHARD_PREFIX

READ_BLOCK_BYTES = 4 << 20  # text tokenised per encode_batch call
MAX_REPORTED_BAD_LINES = 10
# Settings that decide the shards' contents: an existing output must match them all.
SETTING_KEYS = ("max_seq_length", "seed", "vocab_sha256", "vocab_size", "num_shards",
                "compression", "corpus")


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """What `build` makes: the flags of `python -m electra_ko.build_data`, and the defaults
    of the pretraining config's data keys, defined once here."""
    corpus: tuple  # files or globs, local or gs://
    vocab: str  # vocab directory or its vocab.txt
    output_dir: str
    num_shards: int = 8
    num_workers: int = 1
    seed: int = 12345
    max_seq_length: int = 128
    gzip: bool = False
    overwrite: bool = False


class BuildError(Exception):
    """Bad input or output for the data builder; the message says what and where."""


# --------------------------------------------------------------------------- corpus


def corpus_files(patterns):
    """``[(path, size)]`` for every file the patterns name, in the order given."""
    files = []
    for pattern in patterns:
        matches = storage.glob(pattern)
        if not matches:
            raise BuildError(f"corpus input not found: {pattern}")
        files.extend((path, _file_size(path)) for path in matches)
    if sum(size for _, size in files) == 0:
        raise BuildError(f"empty corpus: {', '.join(patterns)} hold no text")
    return files


def _file_size(path):
    with storage.open_read(path, binary=True) as f:
        return f.seek(0, io.SEEK_END)


def plan_shards(files, num_shards):
    """Cut the corpus into ``num_shards`` byte ranges of about equal size.

    Each cut moves forward to the next document start (the line after a blank
    line, or the end of the file), so documents never straddle shards. Returns,
    per shard, a list of ``(path, start, end)`` ranges; a tiny corpus may leave
    some shards empty.
    """
    total = sum(size for _, size in files)
    targets = [total * k // num_shards for k in range(1, num_shards)]
    cuts = []  # (file index, offset) where shards 1..num_shards-1 begin
    base = 0
    for file_index, (path, size) in enumerate(files):
        in_file = [t - base for t in targets[len(cuts):] if t - base < size]
        if in_file:
            with storage.open_read(path, binary=True) as f:
                for target in in_file:
                    cut = _next_document_start(f, target, size)
                    if cuts and cuts[-1][0] == file_index:
                        cut = max(cut, cuts[-1][1])
                    cuts.append((file_index, cut))
        base += size
    bounds = [(0, 0)] + cuts + [(len(files) - 1, files[-1][1])]
    return [_ranges_between(files, bounds[k], bounds[k + 1]) for k in range(num_shards)]


def plan_nonempty_shards(files, requested):
    """`plan_shards` with at most `requested` shards and no empty one: a corpus with fewer
    documents than shards gets fewer shards (said on stderr), never empty files that
    would starve a host or an evaluation."""
    num_shards = requested
    while True:
        plans = plan_shards(files, num_shards)
        filled = sum(1 for plan in plans if plan)
        if filled == num_shards:
            break
        num_shards = filled
    if num_shards < requested:
        print(f"build_data: --num_shards {requested} capped to {num_shards}: the corpus has "
              f"too few documents for more non-empty shards", file=sys.stderr)
    return plans


def _next_document_start(f, offset, size):
    """Offset of the first line after a blank line at or after ``offset`` (or ``size``)."""
    if offset == 0:
        return 0
    f.seek(offset)
    position = offset + len(f.readline())  # finish the line the offset falls in
    for line in iter(f.readline, b""):
        position += len(line)
        if not line.strip():
            return position
    return size


def _ranges_between(files, start, end):
    (first_file, first_offset), (last_file, last_offset) = start, end
    ranges = []
    for file_index in range(first_file, last_file + 1):
        path, size = files[file_index]
        lo = first_offset if file_index == first_file else 0
        hi = last_offset if file_index == last_file else size
        if hi > lo:
            ranges.append((path, lo, hi))
    return ranges


def read_line_blocks(path, start, end, skipped):
    """Yield ``(lines, num_bytes)`` for bytes [start, end) of a file, about 4 MiB at a time.

    Undecodable lines are skipped; their (path, line number) go to ``skipped``.
    """
    with storage.open_read(path, binary=True) as f:
        f.seek(start)
        position = start
        while position < end:
            data = f.read(min(READ_BLOCK_BYTES, end - position))
            if not data:
                break
            if position + len(data) < end and not data.endswith(b"\n"):
                data += f.readline()
            yield _decode_lines(data, path, position, skipped), len(data)
            position += len(data)


def _decode_lines(data, path, offset, skipped):
    if data.endswith(b"\n"):
        data = data[:-1]
    try:
        return data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        pass
    lines = []
    first_line_number = None
    for index, raw in enumerate(data.split(b"\n")):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            if first_line_number is None:
                first_line_number = _line_number_at(path, offset)
            skipped.append((path, first_line_number + index))
    return lines


def _line_number_at(path, offset):
    """1-based number of the line starting at ``offset`` (only needed to report bad bytes)."""
    newlines = 0
    with storage.open_read(path, binary=True) as f:
        remaining = offset
        while remaining:
            chunk = f.read(min(remaining, READ_BLOCK_BYTES))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            remaining -= len(chunk)
    return newlines + 1


# --------------------------------------------------------------------------- one shard


def shard_rng(seed, index):
    """The shard's own RNG: its draws do not depend on which worker builds it or when."""
    return random.Random(f"electra_ko.build_data/{seed}/{index}")


def build_shard(job, index, ranges, tokenizer, report_progress):
    """Tokenise, pack and write one shard; returns its manifest entry."""
    packer = ExamplePacker(job["max_seq_length"], shard_rng(job["seed"], index))
    stats = shards.shard_entry(shards.shard_name(index, job["num_shards"], job["compression"]))
    skipped = []
    path = storage.join(job["output_dir"], stats["file"])
    with storage.atomic_writer(path, binary=True) as out, \
            tfrecord.RecordWriter(out, job["compression"]) as writer:
        for source, start, end in ranges:
            for lines, num_bytes in read_line_blocks(source, start, end, skipped):
                documents_before, tokens_before = packer.documents, stats["tokens"]
                ids, offsets = tokenizer.encode_corpus(lines)
                examples = packer.pack_block(ids, offsets, [not line.strip() for line in lines])
                _write_examples(writer, examples, packer, job, tokenizer, stats)
                stats["lines"] += len(lines)
                report_progress(num_bytes, packer.documents - documents_before, len(examples),
                                stats["tokens"] - tokens_before)
            tokens_before = stats["tokens"]
            last = packer.end_document()  # a file's end ends its last document
            _write_examples(writer, [last] if last else [], packer, job, tokenizer, stats)
            report_progress(0, 1 if last else 0, 1 if last else 0, stats["tokens"] - tokens_before)
    stats["documents"] = packer.documents
    stats["skipped_lines"] = len(skipped)
    stats["bad_lines"] = [f"{source}:{line}" for source, line in skipped[:MAX_REPORTED_BAD_LINES]]
    return stats


def _write_examples(writer, examples, packer, job, tokenizer, stats):
    if not examples:
        return
    features = examples_to_features(examples, packer.sentences, job["max_seq_length"],
                                    tokenizer.special_ids)
    writer.write_examples(features)
    stats["examples"] += len(examples)
    stats["tokens"] += int(features[shards.INPUT_MASK].sum())


# --------------------------------------------------------------------------- workers

_worker_state = {}


def _init_worker(job, progress_queue):
    os.environ["RAYON_NUM_THREADS"] = "1"  # one process per core already
    _worker_state.update(job=job, queue=progress_queue,
                         tokenizer=vocab.load_tokenizer(job["vocab"]))


def _build_shard_in_worker(index, ranges):
    state = _worker_state
    return build_shard(state["job"], index, ranges, state["tokenizer"],
                       lambda *delta: state["queue"].put(delta))


def run_shards(job, plans, pending, tokenizer, num_workers, on_progress, on_done):
    """Build the pending shards in this process or in ``num_workers`` forked processes."""
    if num_workers <= 1:
        for index in pending:
            on_done(build_shard(job, index, plans[index], tokenizer, on_progress))
        return
    context = multiprocessing.get_context("fork")
    progress_queue = context.Queue()
    with context.Pool(num_workers, _init_worker, (job, progress_queue)) as pool:
        running = [pool.apply_async(_build_shard_in_worker, (index, plans[index]))
                   for index in pending]
        while running:
            try:
                on_progress(*progress_queue.get(timeout=0.1))
            except queue.Empty:
                pass
            for result in [r for r in running if r.ready()]:
                running.remove(result)
                on_done(result.get())
        while not progress_queue.empty():
            on_progress(*progress_queue.get())


# --------------------------------------------------------------------------- run


# The pretraining driver runs this stage too, and has no --overwrite flag.
REPLACE_HINT = "delete them, or pass --overwrite to python -m electra_ko.build_data, to rebuild"


def check_existing_output(output_dir, settings, overwrite):
    """Finished shards of an earlier run with the same settings (``{index: entry}``).

    Refuses an output dir built with other settings, or holding shards of unknown
    origin, unless ``overwrite`` (which deletes them).
    """
    shard_files = storage.glob(storage.join(output_dir, SHARD_PATTERN))
    manifests = [storage.join(output_dir, name) for name in (MANIFEST, PARTIAL_MANIFEST)]
    manifests = [path for path in manifests if storage.exists(path)]
    if overwrite:
        for path in shard_files + manifests:
            storage.remove(path)
        return {}
    if not manifests:
        if shard_files:
            raise BuildError(f"{output_dir} holds {len(shard_files)} {SHARD_PREFIX} shards but "
                             f"no {MANIFEST}: cannot tell how they were built; {REPLACE_HINT}")
        return {}
    previous = storage.read_json(manifests[0], BuildError)
    differences = [f"{key}: {previous.get(key)!r} there, {settings[key]!r} now"
                   for key in SETTING_KEYS if previous.get(key) != settings[key]]
    if differences:
        raise BuildError(f"{output_dir} holds shards built with different settings "
                         f"({'; '.join(differences)}); {REPLACE_HINT}")
    present = set(shard_files)
    return {index: entry for index, entry in enumerate(previous.get("shards", []))
            if entry and storage.join(output_dir, entry["file"]) in present}


def write_manifest(output_dir, settings, done, command, complete):
    manifest = shards.make_manifest(settings, [done.get(index) for index in
                                               range(settings["num_shards"])], command, complete)
    name = MANIFEST if complete else PARTIAL_MANIFEST
    storage.write_json(storage.join(output_dir, name), manifest, indent=1)
    return manifest


def build(settings: BuildSettings, command: str, tokenizer=None):
    """Build (or finish) every shard as `settings` say; returns the final manifest.
    `command` is recorded in the manifest (how the shards were made); `tokenizer` is
    `settings.vocab`'s, when the caller has loaded it already."""
    args = settings
    storage.check_writable(args.output_dir)
    storage.remove_stale_temporaries(args.output_dir, [storage.writer_temporaries(name) for name
                                                       in (SHARD_PATTERN, MANIFEST,
                                                           PARTIAL_MANIFEST)])
    if args.num_shards < 1 or args.num_workers < 1:
        raise BuildError("--num_shards and --num_workers must be at least 1")
    if args.max_seq_length < 5:
        raise BuildError(f"--max_seq_length {args.max_seq_length} is too short (needs >= 5)")
    tokenizer = tokenizer or vocab.load_tokenizer(args.vocab)
    files = corpus_files(args.corpus)
    plans = plan_nonempty_shards(files, args.num_shards)
    num_shards = len(plans)  # fewer when the corpus has fewer documents
    compression = shards.GZIP if args.gzip else ""
    settings = {"max_seq_length": args.max_seq_length, "seed": args.seed,
                "vocab_sha256": tokenizer.vocab_sha256, "vocab_size": tokenizer.vocab_size,
                "num_shards": num_shards, "compression": compression,
                "corpus": [{"path": path, "bytes": size} for path, size in files]}
    storage.makedirs(args.output_dir)
    done = check_existing_output(args.output_dir, settings, args.overwrite)
    pending = [index for index in range(num_shards) if index not in done]
    manifest_path = storage.join(args.output_dir, MANIFEST)
    if not pending and storage.exists(manifest_path):
        print(f"build_data: all {num_shards} shards in {args.output_dir} are already complete",
              file=sys.stderr)
        return storage.read_json(manifest_path, BuildError)
    job = {"max_seq_length": args.max_seq_length, "seed": args.seed, "num_shards": num_shards,
           "compression": compression, "output_dir": args.output_dir, "vocab": args.vocab}
    if done:
        print(f"build_data: resuming, {len(done)} of {num_shards} shards already complete",
              file=sys.stderr)
    total_bytes = sum(end - start for index in pending for _, start, end in plans[index])
    # Before any shard appears, so that a killed run's shards always sit beside the record
    # of how they were built, and a re-run resumes instead of refusing them.
    write_manifest(args.output_dir, settings, done, command, complete=False)
    with _ProgressBar(total_bytes) as bar:
        def on_done(entry):
            done[shards.shard_index(entry["file"])] = entry
            write_manifest(args.output_dir, settings, done, command, complete=False)
        run_shards(job, plans, pending, tokenizer, args.num_workers, bar.update, on_done)
    if sum(entry["examples"] for entry in done.values()) == 0:
        raise BuildError(f"empty corpus: {', '.join(args.corpus)} hold no non-blank lines")
    manifest = write_manifest(args.output_dir, settings, done, command, complete=True)
    partial_path = storage.join(args.output_dir, PARTIAL_MANIFEST)
    if storage.exists(partial_path):
        storage.remove(partial_path)
    _report_skipped(manifest)
    return manifest


def _report_skipped(manifest):
    if not manifest["skipped_lines"]:
        return
    bad_lines = [where for entry in manifest["shards"] for where in entry["bad_lines"]]
    listed = ", ".join(bad_lines[:MAX_REPORTED_BAD_LINES])
    print(f"build_data: skipped {manifest['skipped_lines']} lines that are not valid UTF-8 "
          f"(e.g. {listed})", file=sys.stderr)


class _ProgressBar:
    """tqdm over corpus bytes (ETA), with documents, examples and tokens/s in the postfix."""

    def __init__(self, total_bytes):
        self._bar = tqdm.tqdm(total=total_bytes, unit="B", unit_scale=True, desc="build_data",
                              mininterval=0.5, disable=None)
        self._documents = self._examples = self._tokens = 0
        self._start = time.perf_counter()

    def update(self, num_bytes, documents, examples, tokens):
        self._documents += documents
        self._examples += examples
        self._tokens += tokens
        tokens_per_s = self._tokens / max(time.perf_counter() - self._start, 1e-9)
        self._bar.set_postfix(documents=self._documents, examples=self._examples,
                              tokens_per_s=f"{tokens_per_s:,.0f}", refresh=False)
        self._bar.update(num_bytes)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._bar.close()


def define_flags(fv):
    d, defaults = dict(flag_values=fv), BuildSettings
    flags.DEFINE_multi_string("corpus", None, "Corpus file or glob, local or gs:// (one sentence "
                              "per line, blank line between documents); repeatable.", **d)
    flags.DEFINE_string("vocab", None, "Vocab directory or its vocab.txt.", **d)
    flags.DEFINE_string("output_dir", None, "Local directory or gs://bucket/prefix.", **d)
    flags.DEFINE_integer("num_shards", defaults.num_shards, "Shards to write.", **d)
    flags.DEFINE_integer("num_workers", defaults.num_workers, "Worker processes.", **d)
    flags.DEFINE_integer("seed", defaults.seed, "Seed of the packing choices.", **d)
    flags.DEFINE_integer("max_seq_length", defaults.max_seq_length, "Tokens per example.", **d)
    flags.DEFINE_bool("gzip", defaults.gzip, "GZIP-compressed shards (.gz).", **d)
    flags.DEFINE_bool("overwrite", defaults.overwrite,
                      "Replace shards built with other settings.", **d)


def parse_settings(argv):
    """`BuildSettings` from the command line (without the program name). Words after
    `--corpus FILE` are more corpus files, as the shell expands `--corpus *.txt`."""
    fv = flags.FlagValues()
    define_flags(fv)
    if {"-h", "--help", "--helpfull"} & set(argv):
        print(f"usage: python -m electra_ko.build_data --corpus FILE... --vocab DIR "
              f"--output_dir DIR [flags]\n\n{__doc__.splitlines()[0]}\n\n{fv.get_help()}")
        sys.exit(0)
    try:
        extra = fv(["build_data", *argv])[1:]
        missing = [name for name in ("corpus", "vocab", "output_dir") if not fv[name].value]
        if missing:
            raise flags.Error(f"--{missing[0]} is required")
    except flags.Error as err:
        print(f"build_data: error: {err}", file=sys.stderr)
        sys.exit(2)
    values = {field.name: fv[field.name].value for field in dataclasses.fields(BuildSettings)}
    return BuildSettings(**dict(values, corpus=tuple(values["corpus"]) + tuple(extra)))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    settings = parse_settings(argv)
    command = "python -m electra_ko.build_data " + shlex.join(argv)
    try:
        manifest = build(settings, command)
    except (BuildError, vocab.VocabError, storage.OutputError) as err:
        print(f"build_data: error: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"build_data: wrote {manifest['examples']} examples ({manifest['tokens']} tokens) in "
          f"{manifest['num_shards']} shards to {settings.output_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
