"""Corpus preparation: raw text -> one sentence per line, a blank line between documents.

    python -m electra_ko.corpus --input reviews.txt --input 'wiki/*.jsonl' --output corpus.txt

Everything streams (generators over lines, pandas in chunks), so memory is bounded by the
de-duplication set (about 80 bytes per distinct sentence, at most `dedup_max_entries`)
plus the longest input line, whatever the corpus size. No TensorFlow here.

Cleaning order per input line: NFC -> e-mails -> URLs -> phone numbers -> character
filter -> repeat collapse -> whitespace squeeze -> sentence split; then each sentence is
dropped if too short, letter-less or already seen.

Every line is split by default (`split_min_chars=0`): a one-sentence line passes through
unchanged, and the data builder needs sentence boundaries to choose its A/B segment split.
Raise `split_min_chars` to keep short comment-style lines whole.
"""
import csv
import dataclasses
import glob
import hashlib
import json
import os
import sys
import time
from collections import Counter

from absl import app, flags, logging
from tqdm import tqdm

from electra_ko import storage
from electra_ko.cleaning import drop_reason, normalize_text
from electra_ko.sentences import split_sentences

FORMATS = ("auto", "text", "jsonl", "tsv", "csv")
PHONE_MODES = ("mask", "remove", "keep")
_FORMAT_BY_EXTENSION = {
    ".txt": "text", ".text": "text", ".jsonl": "jsonl", ".json": "jsonl",
    ".ndjson": "jsonl", ".tsv": "tsv", ".tab": "tsv", ".csv": "csv",
}
_CSV_CHUNK_ROWS = 10_000
_PROGRESS_EVERY_BYTES = 1 << 20
_MAX_LOGGED_SKIPS = 10
DOCUMENT_BREAK = None  # what readers yield between documents


class CorpusError(ValueError):
    """Bad input or output: the message names the file, line or column at fault."""


@dataclasses.dataclass(frozen=True)
class CorpusOptions:
    """Reader, cleaning and splitting switches; defaults follow KcBERT-style web cleaning."""

    format: str = "auto"
    text_field: str = "text"
    column: str = "document"
    nfc: bool = True
    filter_chars: bool = True
    keep_emoji: bool = True
    remove_urls: bool = True
    remove_emails: bool = True
    phone: str = "mask"
    phone_placeholder: str = "[PHONE]"
    max_repeat: int = 2
    squeeze_whitespace: bool = True
    min_chars: int = 2
    drop_symbol_lines: bool = True
    dedup: bool = True
    dedup_max_entries: int = 10_000_000
    split: bool = True
    split_min_chars: int = 0
    max_undecodable_share: float = 0.05

    def __post_init__(self):
        if self.format not in FORMATS:
            raise CorpusError(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.phone not in PHONE_MODES:
            raise CorpusError(f"phone must be one of {PHONE_MODES}, got {self.phone!r}")
        if self.max_repeat < 0 or self.min_chars < 0 or self.dedup_max_entries < 0:
            raise CorpusError("max_repeat, min_chars and dedup_max_entries must be >= 0")
        if not 0 <= self.max_undecodable_share <= 1:
            raise CorpusError("max_undecodable_share must be between 0 and 1")


# ----------------------------------------------------------------------------- cleaning

def clean_line(text, options=CorpusOptions()):
    """The cleaned line, or None when a rule drops it (no splitting, no de-duplication)."""
    text = normalize_text(text, options)
    if not text or drop_reason(text, options):
        return None
    return text


def sentences_of(text, options):
    if options.split and len(text) > options.split_min_chars:
        return split_sentences(text)
    return [text]


class Deduplicator:
    """Exact duplicate detection with 8-byte BLAKE2b digests kept in a set.

    Past `max_entries` the set stops growing: sentences are still checked against the
    digests already stored, but new ones are no longer remembered, so repeats of
    sentences first seen after the cap pass through. Memory: about 80 bytes per entry.
    """

    def __init__(self, max_entries):
        self.max_entries = max_entries
        self.capped = False
        self._seen = set()

    def __len__(self):
        return len(self._seen)

    def is_duplicate(self, sentence):
        digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest()
        key = int.from_bytes(digest, "little")
        if key in self._seen:
            return True
        if len(self._seen) < self.max_entries:
            self._seen.add(key)
        elif not self.capped:
            self.capped = True
            logging.warning("De-duplication set full (%d sentences): later sentences are "
                            "checked but no longer remembered.", self.max_entries)
        return False


# ----------------------------------------------------------------------------- statistics

@dataclasses.dataclass
class CorpusStats:
    """Counts for the report. Lines are counted before splitting, sentences after, so
    lines_in + sentences_split - sum(dropped) == lines_out (the sentence lines written)."""

    inputs: list
    output: str
    bytes_in: int = 0
    documents_in: int = 0
    documents_out: int = 0
    lines_in: int = 0
    lines_out: int = 0
    chars_in: int = 0
    chars_out: int = 0
    sentences_split: int = 0
    dropped: Counter = dataclasses.field(default_factory=Counter)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    dedup_entries: int = 0
    dedup_capped: bool = False
    wall_s: float = 0.0

    def to_dict(self):
        result = dataclasses.asdict(self)
        result["dropped"] = dict(sorted(self.dropped.items()))
        result["skipped"] = dict(sorted(self.skipped.items()))
        return result


def _skip(stats, kind, location, reason):
    """Count a skipped input unit and log it; only the first few per kind are logged."""
    stats.skipped[kind] += 1
    if stats.skipped[kind] <= _MAX_LOGGED_SKIPS:
        logging.warning("%s: %s; skipped", location, reason)
    if stats.skipped[kind] == _MAX_LOGGED_SKIPS:
        logging.warning("further %s are counted in the stats but not logged", kind)


# ----------------------------------------------------------------------------- readers

class _ByteProgress:
    """tqdm updates in 1 MiB steps: a per-line update would cost more than the cleaning."""

    def __init__(self, bar):
        self._bar = bar
        self._pending = 0

    def advance(self, num_bytes):
        self._pending += num_bytes
        if self._pending >= _PROGRESS_EVERY_BYTES:
            self.flush()

    def flush(self):
        self._bar.update(self._pending)
        self._pending = 0


def input_format(path, options):
    if options.format != "auto":
        return options.format
    return _FORMAT_BY_EXTENSION.get(os.path.splitext(path)[1].lower(), "text")


def read_input(path, options, stats, progress):
    """Yield the raw lines of one input file, with DOCUMENT_BREAK after each document."""
    kind = input_format(path, options)
    lines = _decoded_lines(path, stats, progress, options.max_undecodable_share)
    if kind == "text":
        return _read_text(lines)
    if kind == "jsonl":
        return _read_jsonl(path, lines, options.text_field, stats)
    return _read_table(path, options.column, "\t" if kind == "tsv" else ",", stats, progress)


def _decoded_lines(path, stats, progress, max_bad_share):
    """(line number, text) for each UTF-8 line; undecodable lines are skipped and counted.
    A file with more than `max_bad_share` of them (a binary or an archive matched by a
    glob) is an error, checked after its first 1000 lines and at its end."""
    bad = lineno = 0
    with storage.open_read(path, binary=True) as handle:
        for lineno, raw in enumerate(handle, 1):
            progress.advance(len(raw))
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                _skip(stats, "undecodable_lines", f"{path}:{lineno}",
                      f"bytes that are not UTF-8 at column {error.start + 1}")
                bad += 1
                continue
            finally:
                if lineno == _EARLY_DECODE_CHECK_LINES:
                    _check_decodable(path, bad, lineno, max_bad_share)
            yield lineno, line.lstrip("\ufeff") if lineno == 1 else line
        _check_decodable(path, bad, lineno, max_bad_share)


_EARLY_DECODE_CHECK_LINES = 1000


def _check_decodable(path, bad, lines, max_bad_share):
    if lines and bad / lines > max_bad_share:
        raise CorpusError(f"{path}: {bad} of its first {lines} lines are not UTF-8 text "
                          f"(more than {max_bad_share:.0%}): is it a binary or compressed file? "
                          "Remove it from --input (or raise --max_undecodable_share)")


def _read_text(lines):
    for _, line in lines:
        yield line.rstrip("\r\n") if line.strip() else DOCUMENT_BREAK
    yield DOCUMENT_BREAK


def _read_jsonl(path, lines, text_field, stats):
    for lineno, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            _skip(stats, "bad_json_lines", f"{path}:{lineno}", f"invalid JSON ({error.msg})")
            continue
        if not isinstance(record, dict) or text_field not in record:
            fields = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise CorpusError(f"{path}:{lineno}: no field {text_field!r} in the JSON record "
                              f"(found: {fields}); choose the field with --text_field")
        text = record[text_field]
        if text is not None and not isinstance(text, str):
            raise CorpusError(f"{path}:{lineno}: field {text_field!r} holds "
                              f"{type(text).__name__}, expected a string")
        yield from _nonblank_lines(text or "")
        yield DOCUMENT_BREAK


def _read_table(path, column, separator, stats, progress):
    """Each row's `column` cell is one document; pandas reads in chunks to bound memory."""
    import pandas as pd  # only table inputs pay for the import

    # Real TSV files hold bare `"` inside text, so TSV is read without quoting.
    quoting = csv.QUOTE_NONE if separator == "\t" else csv.QUOTE_MINIMAL
    read_options = dict(sep=separator, quoting=quoting,
                        encoding="utf-8", encoding_errors="replace")
    with storage.open_read(path, binary=True) as handle:
        try:
            header = list(pd.read_csv(handle, nrows=0, **read_options).columns)
        except pd.errors.EmptyDataError:
            raise CorpusError(f"{path}: empty table, expected a header row "
                              f"with a {column!r} column")
    if column not in header:
        raise CorpusError(f"{path}: no column {column!r} (columns: {header}); "
                          f"choose one with --column")
    with storage.open_read(path, binary=True) as handle:
        chunks = pd.read_csv(handle, usecols=[column], dtype=str, keep_default_na=False,
                             chunksize=_CSV_CHUNK_ROWS, **read_options)
        row, position = 0, 0
        for chunk in chunks:
            for cell in chunk[column]:
                row += 1
                if "\ufffd" in cell:
                    _skip(stats, "undecodable_rows", f"{path}: data row {row}",
                          "bytes that are not UTF-8")
                    continue
                yield from _nonblank_lines(cell)
                yield DOCUMENT_BREAK
            progress.advance(handle.tell() - position)
            position = handle.tell()


def _nonblank_lines(text):
    return (line for line in text.splitlines() if line.strip())


# ----------------------------------------------------------------------------- files

def expand_inputs(patterns):
    """Input paths from --input values: each may be a path, a glob or a comma-separated list."""
    paths = []
    for pattern in (part.strip() for value in patterns for part in value.split(",")):
        if not pattern:
            continue
        if glob.has_magic(pattern):
            matches = storage.glob(pattern)
            if not matches:
                raise CorpusError(f"no input file matches {pattern!r}")
            paths.extend(matches)
        elif storage.isdir(pattern):
            raise CorpusError(f"{pattern} is a directory; pass a glob such as '{pattern}/*.txt'")
        elif storage.exists(pattern):
            paths.append(pattern)
        else:
            raise CorpusError(f"input file not found: {pattern}")
    if not paths:
        raise CorpusError("no input file given (use --input)")
    return paths


def _total_bytes(paths):
    """Total input size for the progress bar's ETA; None (no ETA) for gs:// inputs."""
    if any(storage.is_gcs(path) for path in paths):
        return None
    return sum(os.path.getsize(path) for path in paths)


def _output_writer(path):
    """Atomic (temporary name, then rename or one upload): a crash never leaves a half file."""
    storage.makedirs(os.path.dirname(path) or ".")
    return storage.atomic_writer(path)


# ----------------------------------------------------------------------------- pipeline

class _DocumentWriter:
    """Writes sentences, a blank line between documents, and counts documents in and out."""

    def __init__(self, handle, stats):
        self._handle = handle
        self._stats = stats
        self._lines_in_document = 0
        self._sentences_in_document = 0

    def saw_line(self):
        self._lines_in_document += 1

    def write(self, sentence):
        if self._sentences_in_document == 0 and self._stats.documents_out:
            self._handle.write("\n")
        self._handle.write(sentence)
        self._handle.write("\n")
        self._sentences_in_document += 1
        self._stats.lines_out += 1
        self._stats.chars_out += len(sentence)

    def end_document(self):
        self._stats.documents_in += self._lines_in_document > 0
        self._stats.documents_out += self._sentences_in_document > 0
        self._lines_in_document = self._sentences_in_document = 0


def _process_line(line, options, dedup, stats, writer):
    writer.saw_line()
    stats.lines_in += 1
    stats.chars_in += len(line)
    text = normalize_text(line, options)
    if not text:
        stats.dropped["empty"] += 1
        return
    sentences = sentences_of(text, options)
    stats.sentences_split += len(sentences) - 1
    for sentence in sentences:
        reason = drop_reason(sentence, options)
        if reason is None and dedup is not None and dedup.is_duplicate(sentence):
            reason = "duplicate"
        if reason:
            stats.dropped[reason] += 1
        else:
            writer.write(sentence)


def check_output_is_not_an_input(output, paths):
    """Refuse an output that would replace one of the raw inputs (or its stats file)."""
    def same(path):
        return path if storage.is_gcs(path) else os.path.realpath(path)
    targets = {same(output), same(output + ".stats.json")}
    clash = [path for path in paths if same(path) in targets]
    if clash:
        raise CorpusError(f"--output {output} is also an input ({clash[0]}): writing it would "
                          "replace the raw corpus; choose another output path")


def prepare_corpus(inputs, output, options=CorpusOptions()):
    """Clean and split `inputs` (paths, globs) into `output`; returns the stats dict.

    The stats are also written to `<output>.stats.json`. Raises CorpusError for missing
    inputs, a missing column or field, or when nothing survives cleaning.
    """
    started = time.time()
    storage.check_writable(output, kind="file")
    storage.remove_stale_temporaries(os.path.dirname(output) or ".",
                                     [storage.writer_temporaries(os.path.basename(output))])
    paths = expand_inputs(inputs)
    check_output_is_not_an_input(output, paths)
    stats = CorpusStats(inputs=paths, output=output)
    dedup = Deduplicator(options.dedup_max_entries) if options.dedup else None
    with _output_writer(output) as handle, \
            tqdm(total=_total_bytes(paths), unit="B", unit_scale=True, desc="corpus") as bar:
        writer = _DocumentWriter(handle, stats)
        progress = _ByteProgress(bar)
        for path in paths:
            for line in read_input(path, options, stats, progress):
                if line is DOCUMENT_BREAK:
                    writer.end_document()
                else:
                    _process_line(line, options, dedup, stats, writer)
        progress.flush()
        if not stats.lines_out:
            raise CorpusError(f"no sentence survived cleaning of {', '.join(paths)}; "
                              f"{output} was not written")
    stats.bytes_in = bar.n
    if dedup is not None:
        stats.dedup_entries, stats.dedup_capped = len(dedup), dedup.capped
    stats.wall_s = round(time.time() - started, 3)
    report = stats.to_dict()
    report["options"] = dataclasses.asdict(options)
    storage.write_json(output + ".stats.json", report, newline=False)
    return report


def format_report(report):
    dropped = ", ".join(f"{rule} {count:,}" for rule, count in report["dropped"].items())
    skipped = ", ".join(f"{kind} {count:,}" for kind, count in report["skipped"].items())
    return "\n".join([
        f"corpus written to {report['output']} (stats: {report['output']}.stats.json)",
        f"  documents {report['documents_in']:,} -> {report['documents_out']:,}",
        f"  lines     {report['lines_in']:,} -> {report['lines_out']:,} sentences "
        f"({report['sentences_split']:,} added by splitting)",
        f"  chars     {report['chars_in']:,} -> {report['chars_out']:,}",
        f"  dropped   {dropped or 'nothing'}",
        f"  skipped   {skipped or 'nothing'}",
        f"  dedup     {report['dedup_entries']:,} distinct sentences"
        + (" (cap reached)" if report["dedup_capped"] else ""),
        f"  wall      {report['wall_s']:.1f} s",
    ])


# ----------------------------------------------------------------------------- CLI

def define_flags():
    """Register the CLI flags (only when run as a program, so importing stays flag-free)."""
    defaults = CorpusOptions()
    flags.DEFINE_multi_string("input", None,
                              "Input file, glob or comma-separated list (repeatable)")
    flags.DEFINE_string("output", None, "Output corpus file (local path or gs://).")
    flags.DEFINE_enum("format", defaults.format, FORMATS,
                      "Input format; auto picks it from the extension (.txt .jsonl .tsv .csv).")
    flags.DEFINE_string("text_field", defaults.text_field, "JSON lines: field holding the text.")
    flags.DEFINE_string("column", defaults.column, "TSV/CSV: column holding the text.")
    flags.DEFINE_bool("nfc", defaults.nfc, "Unicode NFC (composes decomposed Hangul jamo).")
    flags.DEFINE_bool("filter_chars", defaults.filter_chars,
                      "Replace characters outside Hangul, ASCII and common punctuation by a space.")
    flags.DEFINE_bool("keep_emoji", defaults.keep_emoji, "Keep emoji when filtering characters.")
    flags.DEFINE_bool("remove_urls", defaults.remove_urls, "Remove URLs.")
    flags.DEFINE_bool("remove_emails", defaults.remove_emails, "Remove e-mail addresses.")
    flags.DEFINE_enum("phone", defaults.phone, PHONE_MODES, "Phone numbers: mask, remove or keep.")
    flags.DEFINE_string("phone_placeholder", defaults.phone_placeholder,
                        "What --phone=mask puts in place of a phone number.")
    flags.DEFINE_integer("max_repeat", defaults.max_repeat,
                         "Collapse a character repeated more than N times to N (0: off).")
    flags.DEFINE_bool("squeeze_whitespace", defaults.squeeze_whitespace,
                      "Collapse whitespace runs to one space.")
    flags.DEFINE_integer("min_chars", defaults.min_chars, "Drop sentences shorter than this.")
    flags.DEFINE_bool("drop_symbol_lines", defaults.drop_symbol_lines,
                      "Drop sentences without any letter (only digits, symbols, emoji).")
    flags.DEFINE_bool("dedup", defaults.dedup, "Drop exact duplicate sentences corpus-wide.")
    flags.DEFINE_integer("dedup_max_entries", defaults.dedup_max_entries,
                         "Distinct sentences remembered for de-duplication (~80 bytes each); "
                         "past the cap new sentences are no longer remembered.")
    flags.DEFINE_bool("split", defaults.split, "Split lines into sentences.")
    flags.DEFINE_float("max_undecodable_share", defaults.max_undecodable_share,
                       "Stop when more than this share of a file's lines are not UTF-8.")
    flags.DEFINE_integer("split_min_chars", defaults.split_min_chars,
                         "Only split lines longer than this (0: split every line).")
    flags.mark_flags_as_required(["input", "output"])


def main(argv):
    del argv
    values = flags.FLAGS
    try:
        options = CorpusOptions(**{field.name: values[field.name].value
                                   for field in dataclasses.fields(CorpusOptions)})
        report = prepare_corpus(values.input, values.output, options)
    except (CorpusError, storage.OutputError) as error:
        sys.exit(f"electra_ko.corpus: error: {error}")
    print(format_report(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
