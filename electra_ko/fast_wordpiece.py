"""BERT WordPiece over many lines at once, id for id what the `tokenizers` pipeline gives.

The Rust pipeline costs ~10 us per word on this corpus (normaliser alignments and a
string allocation per WordPiece candidate), too slow for the data builder. This
encoder gets the same ids with NumPy, on the whole block's code points at once:

* Each character is classified once, by asking the Rust pipeline itself: *plain*
  (the normaliser keeps it, the pre-tokenizer does not split at it), *punctuation*
  (kept, and split off as its own piece) or *complex* (anything else: other
  whitespace, control and CJK characters, characters the normaliser changes).
* The BERT normaliser works character by character and the pre-tokenizer splits at
  every space, so a line's ids are the concatenation of its space-separated words'
  ids. A word of plain and punctuation characters is a sequence of *units* (a run
  of plain characters, or one punctuation character) and WordPiece sees each unit
  as one pre-token. A word holding a complex character is one unit that the Rust
  pipeline encodes.
* Equal units are encoded once (natural text repeats words heavily). Greedy
  longest-match-first WordPiece runs on the distinct units with polynomial hashes
  of every substring looked up in the vocabulary's hashes. Hashes only find
  candidates: every token used, and every unit merged with another by hash, is
  compared character by character, and a unit failing a check goes to the Rust
  pipeline. The result therefore never depends on hash luck.
"""
import numpy as np

_SEPARATOR, _PLAIN, _PUNCT, _COMPLEX, _UNKNOWN = range(5)
_SPACE, _NEWLINE = ord(" "), ord("\n")
_NUM_CODE_POINTS = 0x110000
_HASH_BASE = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64
_SLOT_MULTIPLIER = np.uint64(0xBF58476D1CE4E5B9)
_CONTINUATION_SALT = np.uint64(0xD6E8FEB86659FD93)  # added to "##x" keys: tells them from "x"
_EXACT_KEY_CHARS = 3  # 3 x 21 bits: code points + 1 fit below the top bit
_HASHED_KEY = np.uint64(1 << 63)


class CorpusEncoder:
    """``encode(lines) -> (ids, offsets)``: line ``i`` has ids ``ids[offsets[i]:offsets[i+1]]``."""

    def __init__(self, pipeline, tokens, unk_id, max_chars_per_word, continuing_prefix="##",
                 lowercase=False):
        self._pipeline = pipeline
        self._unk_id = unk_id
        self._max_chars = max_chars_per_word
        self._lowercase = lowercase
        self._classes = np.full(_NUM_CODE_POINTS, _UNKNOWN, dtype=np.uint8)
        self._classes[[_SPACE, _NEWLINE]] = _SEPARATOR
        self._powers = _HashPowers()
        self._vocab = _VocabTable(tokens, continuing_prefix, self._powers)

    def encode(self, lines):
        text = "\n".join(lines)
        if not text:
            return np.zeros(0, dtype=np.int32), np.zeros(len(lines) + 1, dtype=np.int64)
        code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        classes = self._classify(code_points)
        units = _Units(code_points, classes, self._powers)
        unique = units.deduplicate()
        unique_ids, unique_counts = self._encode_unique(text, units, unique)
        ids, counts = _gather_ragged(unique_ids, unique_counts, unique.codes)
        unit_offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=unit_offsets[1:])
        return ids, unit_offsets[units.line_ends]

    # ------------------------------------------------------------------ characters

    def _classify(self, code_points):
        classes = self._classes[code_points]
        unknown = np.unique(code_points[classes == _UNKNOWN])
        if len(unknown):
            self._classes[unknown] = [self._character_class(chr(c)) for c in unknown.tolist()]
            classes = self._classes[code_points]
        return classes

    def _character_class(self, char):
        """What the Rust pipeline does with ``char`` between two plain letters."""
        if self._pipeline.normalizer.normalize_str(char) != char:
            return _COMPLEX
        if self._lowercase and _has_combining_class(char):
            return _COMPLEX  # NFD may reorder it with its neighbours
        pieces = [piece for piece, _ in self._pipeline.pre_tokenizer.pre_tokenize_str(f"a{char}a")]
        if pieces == [f"a{char}a"]:
            return _PLAIN
        if pieces == ["a", char, "a"]:
            return _PUNCT
        return _COMPLEX

    # ------------------------------------------------------------------ units

    def _encode_unique(self, text, units, unique):
        """Ids of each distinct unit (flat, with counts), WordPiece in NumPy where possible."""
        representatives = unique.representatives
        simple = ~units.complex[representatives]
        pieces = _WordPieces(units, representatives[simple], self._vocab, self._powers,
                             self._max_chars, self._unk_id)
        needs_rust = np.flatnonzero(~simple)
        needs_rust = np.concatenate((needs_rust, np.flatnonzero(simple)[pieces.unverified]))
        rust_ids, rust_counts = self._encode_with_pipeline(
            [text[units.starts[r]:units.ends[r]] for r in representatives[needs_rust].tolist()])
        counts = np.zeros(len(representatives), dtype=np.int64)
        counts[simple] = pieces.counts
        counts[needs_rust] = rust_counts
        offsets = np.concatenate(([0], np.cumsum(counts)))
        ids = np.empty(offsets[-1], dtype=np.int32)
        simple_offsets = offsets[:-1][simple]
        pieces.scatter(ids, simple_offsets)
        _scatter_ragged(ids, offsets[:-1][needs_rust], rust_ids, rust_counts)
        return ids, counts

    def _encode_with_pipeline(self, texts):
        encodings = self._pipeline.encode_batch_fast(texts, add_special_tokens=False)
        id_lists = [encoding.ids for encoding in encodings]
        counts = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
        ids = np.fromiter((i for ids in id_lists for i in ids), dtype=np.int32,
                          count=int(counts.sum()))
        return ids, counts


def _has_combining_class(char):
    import unicodedata

    return unicodedata.combining(char) != 0


class _HashPowers:
    """Powers of the hash base and of its inverse modulo 2**64, grown on demand."""

    def __init__(self):
        self.up = np.ones(1, dtype=np.uint64)
        self.down = np.ones(1, dtype=np.uint64)

    def ensure(self, size):
        if size <= len(self.up):
            return
        size = max(size, 2 * len(self.up))
        self.up = _power_series(_HASH_BASE, size)
        self.down = _power_series(pow(_HASH_BASE, -1, 1 << 64), size)

    def prefix_hashes(self, code_points):
        """``H`` with ``(H[e] - H[s]) * down[s]`` the hash of ``code_points[s:e]``."""
        self.ensure(len(code_points) + 1)
        terms = code_points.astype(np.uint64)
        terms += np.uint64(1)
        terms *= self.up[:len(code_points)]
        hashes = np.zeros(len(code_points) + 1, dtype=np.uint64)
        np.cumsum(terms, out=hashes[1:])
        return hashes


def _power_series(base, size):
    series = np.full(size, base, dtype=np.uint64)
    series[0] = 1
    with np.errstate(over="ignore"):
        return np.cumprod(series, dtype=np.uint64)


class _VocabTable:
    """Every prefix of every vocabulary entry in an open-addressing hash table.

    Entries are the tokens (matched at a unit's start) and the stems of ``##``
    tokens (matched elsewhere). A key that is no entry's prefix ends the search
    for longer matches at that position, so the search walks a trie of the
    vocabulary. Entry code points are kept to verify every match.
    """

    NOT_A_PREFIX = _EMPTY = -2  # an unused slot; -1 marks a prefix that is no entry itself

    def __init__(self, tokens, continuing_prefix, powers):
        texts, continuation, token_ids = [], [], []
        for token_id, token in enumerate(tokens):
            stem = token[len(continuing_prefix):]
            for text, is_continuation in ((token, False), (stem, True)):
                if is_continuation and not (token.startswith(continuing_prefix) and stem):
                    continue
                texts.append(text)
                continuation.append(is_continuation)
                token_ids.append(token_id)
        self.code_points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        self.entry_length = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
        self.entry_start = np.cumsum(self.entry_length) - self.entry_length
        self.entry_is_continuation = np.array(continuation, dtype=bool)
        self.entry_token = np.array(token_ids, dtype=np.int32)
        self.max_length = int(self.entry_length.max(initial=1))
        self._build_table(powers)
        self._build_char_table()

    def _build_table(self, powers):
        keys, values = self._prefix_keys(powers)
        bits = max(10, (4 * len(keys)).bit_length())
        self._shift = np.uint64(64 - bits)
        self._mask = (1 << bits) - 1
        taken = [False] * (1 << bits)
        slots = []
        for slot in _slot_of(keys, self._shift).tolist():  # linear probing
            while taken[slot]:
                slot = (slot + 1) & self._mask
            taken[slot] = True
            slots.append(slot)
        self._slot_key = np.zeros(1 << bits, dtype=np.uint64)
        self._slot_value = np.full(1 << bits, self._EMPTY, dtype=np.int64)
        self._slot_key[slots] = keys
        self._slot_value[slots] = values

    def _build_char_table(self):
        """``lookup`` of every one-character key, by code point (a unit's first search)."""
        self._char_value = np.full((2, _NUM_CODE_POINTS), self._EMPTY, dtype=np.int32)
        first = self.code_points[self.entry_start[self.entry_length > 0]]
        continuation = self.entry_is_continuation[self.entry_length > 0]
        keys = first.astype(np.uint64) + np.uint64(1)  # the hash of a one-character text
        keys[continuation] += _CONTINUATION_SALT
        self._char_value[continuation.astype(np.intp), first] = self.lookup(keys)

    def lookup_char(self, code_points, is_start):
        """``lookup`` of one-character keys, without hashing."""
        return self._char_value[(~is_start).astype(np.intp), code_points]

    def _prefix_keys(self, powers):
        """Distinct keys of all entry prefixes, each with its entry (or -1: no entry)."""
        prefix = powers.prefix_hashes(self.code_points)
        lengths = self.entry_length
        begin = np.repeat(self.entry_start, lengths)
        end = ragged_positions(self.entry_start + 1, lengths)
        with np.errstate(over="ignore"):
            keys = (prefix[end] - prefix[begin]) * powers.down[begin]
        keys[np.repeat(self.entry_is_continuation, lengths)] += _CONTINUATION_SALT
        whole = end == np.repeat(self.entry_start + lengths, lengths)
        values = np.where(whole, np.repeat(np.arange(len(lengths)), lengths), -1)
        order = np.lexsort((values, keys))  # per key, a whole entry sorts last
        keys, values = keys[order], values[order]
        last = np.append(keys[1:] != keys[:-1], True)
        return keys[last], values[last]

    def lookup(self, keys):
        """Per key: its entry index, -1 for a prefix that is no entry, -2 for no prefix.

        Most keys end at their first slot (load <= 1/4), so that round runs on the
        whole array without index bookkeeping; only the keys that must probe on do.
        """
        slots = _slot_of(keys, self._shift)
        values = self._slot_value[slots]
        found = self._slot_key[slots] == keys
        result = np.where(found, values, self._EMPTY)
        pending = np.flatnonzero(~found & (values != self._EMPTY))
        slots = slots[pending]
        while len(pending):
            slots = (slots + 1) & self._mask
            values = self._slot_value[slots]
            found = self._slot_key[slots] == keys[pending]
            result[pending[found]] = values[found]
            probing = ~found & (values != self._EMPTY)
            pending, slots = pending[probing], slots[probing]
        return result


class _Units:
    """WordPiece pre-tokens of a block: ``[starts, ends)`` in code points, in text order."""

    def __init__(self, code_points, classes, powers):
        separator = classes == _SEPARATOR
        punct = classes == _PUNCT
        complex_char = _complex_words(separator, classes == _COMPLEX)
        after_separator = np.concatenate(([True], separator[:-1]))
        after_punct = np.concatenate(([False], punct[:-1]))
        start = ~separator & (after_separator | (~complex_char & (punct | after_punct)))
        next_start = np.concatenate((start[1:] | separator[1:], [True]))
        self.starts = np.flatnonzero(start)
        self.ends = np.flatnonzero(~separator & next_start) + 1
        self.complex = complex_char[self.starts]
        newlines = np.flatnonzero(code_points == _NEWLINE)
        # units before each line's end (and 0 before the first line)
        self.line_ends = np.concatenate(([0], np.searchsorted(self.starts, newlines),
                                         [len(self.starts)]))
        self.code_points = code_points
        with np.errstate(over="ignore"):
            prefix = powers.prefix_hashes(code_points)
            hashes = (prefix[self.ends] - prefix[self.starts]) * powers.down[self.starts]
        self.keys = _unit_keys(code_points, self.starts, self.ends - self.starts, hashes)

    def deduplicate(self):
        """Units grouped by content; groups formed by hash are checked character by character."""
        codes, num_groups = _factorize(self.keys)
        representatives = np.empty(num_groups, dtype=np.int64)
        representatives[codes] = np.arange(len(codes))  # any member will do
        lengths = self.ends - self.starts
        copies = np.flatnonzero((representatives[codes] != np.arange(len(codes)))
                                & (self.keys >= _HASHED_KEY))
        original = representatives[codes[copies]]
        mismatch = np.zeros(len(codes), dtype=bool)
        mismatch[copies] = lengths[copies] != lengths[original]
        copies, original = copies[~mismatch[copies]], original[~mismatch[copies]]
        chars = ragged_positions(self.starts[copies], lengths[copies])
        shift = np.repeat(self.starts[original] - self.starts[copies], lengths[copies])
        differs = self.code_points[chars + shift] != self.code_points[chars]
        mismatch[np.repeat(copies, lengths[copies])[differs]] = True
        if mismatch.any():  # a hash collision: those units become groups of their own
            extra = np.flatnonzero(mismatch)
            codes[extra] = len(representatives) + np.arange(len(extra))
            representatives = np.concatenate((representatives, extra))
        return _Groups(codes, representatives)


def _factorize(keys):
    """``(codes, num_groups)``: equal keys get equal codes in ``range(num_groups)``.

    Vectorised linear probing into a table of at least twice as many slots as keys;
    0 marks an empty slot, so keys must be non-zero (``_unit_keys`` are). Equal keys
    share every probe, so they land in one slot; a slot's dense rank is the code.
    Pandas' factorize is ~30% faster here but costs ~0.2 s to import per process.
    """
    bits = max(10, (2 * len(keys)).bit_length())
    table = np.zeros(1 << bits, dtype=np.uint64)
    slots = _slot_of(keys, np.uint64(64 - bits))
    table[slots] = keys  # one of the keys sharing a slot wins it
    pending = np.flatnonzero(table[slots] != keys)
    while len(pending):
        probe = (slots[pending] + 1) & ((1 << bits) - 1)
        slots[pending] = probe
        waiting = keys[pending]
        free = table[probe] == 0
        table[probe[free]] = waiting[free]
        pending = pending[table[probe] != waiting]
    rank = np.cumsum(table != 0) - 1
    return rank[slots], int(rank[-1]) + 1


def _slot_of(keys, shift):
    """Multiplicative hashing: short strings' keys are small numbers, so mix first."""
    with np.errstate(over="ignore"):
        return ((keys * _SLOT_MULTIPLIER) >> shift).astype(np.int64)


def _unit_keys(code_points, starts, lengths, hashes):
    """Grouping keys: a unit of up to three characters packs its code points (21 bits
    each, exact, so its group needs no check), a longer one has its hash with the top
    bit set."""
    keys = hashes | _HASHED_KEY
    short = np.flatnonzero(lengths <= _EXACT_KEY_CHARS)
    short_starts, short_lengths = starts[short], lengths[short]
    packed = np.zeros(len(short), dtype=np.uint64)
    for k in range(_EXACT_KEY_CHARS):
        char = code_points[np.minimum(short_starts + k, len(code_points) - 1)].astype(np.uint64)
        char += np.uint64(1)
        char[short_lengths <= k] = 0
        packed |= char << np.uint64(21 * k)
    keys[short] = packed
    return keys


def _complex_words(separator, complex_chars):
    """Mask of the characters of every word (between separators) holding a complex one."""
    mask = np.zeros(len(separator), dtype=bool)
    if not complex_chars.any():
        return mask
    boundaries = np.flatnonzero(separator)
    where = np.unique(np.searchsorted(boundaries, np.flatnonzero(complex_chars)))
    starts = np.concatenate(([0], boundaries + 1))[where]
    ends = np.append(boundaries, len(separator))[where]
    for start, end in zip(starts.tolist(), ends.tolist()):  # such words are rare
        mask[start:end] = True
    return mask


class _Groups:
    """``codes[u]``: the group of unit ``u``; ``representatives[g]``: one unit of group ``g``."""

    def __init__(self, codes, representatives):
        self.codes = codes
        self.representatives = representatives


class _WordPieces:
    """Greedy longest-match-first WordPiece of distinct plain units, all at once.

    For every position of every unit the longest vocabulary entry starting there is
    found first (a plain token at a unit's start, a ``##`` token elsewhere); each
    unit's pieces then follow by jumping from match to match. A unit longer than
    the word limit, or with a position no entry matches, is one ``[UNK]``, as in
    the Rust WordPiece model.
    """

    def __init__(self, units, representatives, vocab, powers, max_chars, unk_id):
        self._vocab = vocab
        self._unk_id = unk_id
        starts, ends = units.starts[representatives], units.ends[representatives]
        lengths = ends - starts
        too_long = lengths > max_chars
        lengths = np.where(too_long, 0, lengths)
        first = np.concatenate(([0], np.cumsum(lengths)[:-1]))  # local index of unit starts
        positions = ragged_positions(starts, lengths)  # local index -> code point index
        remaining = np.repeat(ends, lengths) - positions
        is_start = np.zeros(len(positions), dtype=bool)
        is_start[first[lengths > 0]] = True
        chars = units.code_points[positions]
        best_length, best_entry = self._longest_matches(chars, remaining, is_start, powers)
        self._steps = self._follow_matches(first, lengths, best_length, best_entry)
        self.unverified = self._verify(chars, is_start, len(starts))
        matched = np.bincount(self._steps["unit"], minlength=len(starts))
        self._unk = (matched == 0) | self._failed
        self.counts = np.where(self._unk, 1, matched)

    def _longest_matches(self, chars, remaining, is_start, powers):
        """Per position of ``chars`` (the units' characters back to back), the length and
        entry of the longest match. Keys grow by one character per round, so a round
        costs one look-up of the characters it adds."""
        vocab = self._vocab
        entries = vocab.lookup_char(chars, is_start)
        hit = entries >= 0
        best_length = hit.astype(np.int64)
        best_entry = np.where(hit, entries, 0).astype(np.int64)
        candidates = np.flatnonzero((entries != vocab.NOT_A_PREFIX) & (remaining > 1))
        terms = chars.astype(np.uint64) + np.uint64(1)
        keys = terms[candidates] + np.where(is_start[candidates], np.uint64(0), _CONTINUATION_SALT)
        for length in range(2, vocab.max_length + 1):
            if not len(candidates):
                break
            keys += terms[candidates + (length - 1)] * powers.up[length - 1]
            entries = vocab.lookup(keys)
            hit = entries >= 0
            best_length[candidates[hit]] = length
            best_entry[candidates[hit]] = entries[hit]
            going = (entries != vocab.NOT_A_PREFIX) & (remaining[candidates] > length)
            candidates, keys = candidates[going], keys[going]
        return best_length, best_entry

    def _follow_matches(self, first, lengths, best_length, best_entry):
        """Each unit's chain of matches as flat (unit, step, position, entry, length) arrays."""
        self._failed = np.zeros(len(first), dtype=bool)
        active = np.flatnonzero(lengths > 0)
        cursor = first[active]
        end = cursor + lengths[active]
        steps = []
        step = 0
        while len(active):
            length = best_length[cursor]
            self._failed[active[length == 0]] = True
            keep = length > 0
            active, cursor, end, length = active[keep], cursor[keep], end[keep], length[keep]
            steps.append((active, np.full(len(active), step), cursor, best_entry[cursor], length))
            cursor = cursor + length
            going = cursor < end
            active, cursor, end = active[going], cursor[going], end[going]
            step += 1
        names = ("unit", "step", "position", "entry", "length")
        return {name: np.concatenate([s[k] for s in steps]) if steps else np.zeros(0, np.int64)
                for k, name in enumerate(names)}

    def _verify(self, chars, is_start, num_units):
        """Units whose matches are not, character for character, the entries found."""
        vocab, steps = self._vocab, self._steps
        entry, local = steps["entry"], steps["position"]
        lengths = steps["length"]
        bad = ((vocab.entry_is_continuation[entry] == is_start[local])
               | (vocab.entry_length[entry] != lengths))
        chars_unit = np.repeat(steps["unit"], lengths)
        vocab_at = ragged_positions(vocab.entry_start[entry], lengths)
        vocab_at = np.minimum(vocab_at, len(vocab.code_points) - 1)  # a wrong length is `bad`
        differs = vocab.code_points[vocab_at] != chars[ragged_positions(local, lengths)]
        unverified = np.zeros(num_units, dtype=bool)
        unverified[steps["unit"][bad]] = True
        unverified[chars_unit[differs]] = True
        return unverified

    def scatter(self, ids, unit_offsets):
        """Write each verified unit's ids at its offset in ``ids``."""
        steps = self._steps
        keep = ~(self.unverified | self._unk)[steps["unit"]]
        ids[unit_offsets[steps["unit"][keep]] + steps["step"][keep]] = \
            self._vocab.entry_token[steps["entry"][keep]]
        unk = self._unk & ~self.unverified
        ids[unit_offsets[unk]] = self._unk_id


def ragged_positions(starts, counts):
    """``concat(arange(s, s + c) for s, c in zip(starts, counts))`` without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    before = np.cumsum(counts) - counts
    return np.repeat(np.asarray(starts, dtype=np.int64) - before, counts) + np.arange(counts.sum())


def _gather_ragged(values, counts, index):
    """The rows ``index`` of a ragged array (flat ``values``, row ``counts``), flat, with counts."""
    offsets = np.cumsum(counts) - counts
    picked = counts[index]
    return values[ragged_positions(offsets[index], picked)], picked


def _scatter_ragged(dest, dest_starts, values, counts):
    dest[ragged_positions(dest_starts, counts)] = values
