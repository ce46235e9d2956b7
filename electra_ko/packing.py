"""ELECTRA's example packing: which sentences form each example, and its feature arrays.

`ExamplePacker` decides from sentence lengths alone, exactly as google-research/electra's
``build_pretraining_dataset.py`` does; `examples_to_features` lays the chosen sentences
out as ``[CLS] A [SEP] B [SEP]`` rows. `electra_ko.build_data` drives both per shard.
"""
import itertools

import numpy as np

from electra_ko import fast_wordpiece, shards


class ExamplePacker:
    """ELECTRA's example builder, deciding from sentence lengths alone.

    Sentences of one document accumulate until they reach the target length; the
    example is ``[CLS] A [SEP] B [SEP]`` where sentences go to A until it would
    pass half the target (a coin flip decides the sentence that crosses it), with
    a 10% chance of an A-only example and a 5% chance that the next example
    aims at a random shorter length. Sentences that tokenise to nothing are
    dropped: in the original they never change an example nor consume a draw.

    An example is ``(first, second)``: the sentence numbers of segment A and B
    (``examples_to_features`` joins and truncates their ids). Sentences are
    numbered within ``sentences`` (flat ids, offsets), the current block's ids
    after those of the sentences still pending from earlier blocks.
    """

    def __init__(self, max_seq_length, rng):
        self._max_length = max_seq_length
        self._target_length = max_seq_length
        self._rng = rng
        self._sentences = []  # pending (number, length)
        self._length = 0
        self._document_open = False
        self.documents = 0
        self.sentences = (np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64))

    def pack_block(self, ids, offsets, blank):
        """Examples completed by a block of lines; ``blank[i]`` ends a document."""
        first_number = self._carry_pending(ids, offsets)
        blank = np.asarray(blank, dtype=bool)
        self._count_documents(blank)
        lengths = np.where(blank, 0, np.diff(offsets))
        events = np.flatnonzero(blank | (lengths > 0))  # lines that tokenise to nothing: none
        return self._pack((events + first_number).tolist(), lengths[events].tolist())

    def end_document(self):
        """Flush what the document left over (at a file's end); examples never mix documents."""
        self._count_documents(np.ones(1, dtype=bool))
        examples = self._pack([None], [0])
        return examples[0] if examples else None

    def _count_documents(self, blank):
        """A blank line ends a document when a non-blank line came since the last blank one."""
        if not len(blank):
            return
        open_before = np.concatenate(([self._document_open], ~blank[:-1]))
        self.documents += int(np.count_nonzero(blank & open_before))
        self._document_open = not blank[-1]

    def _pack(self, numbers, lengths):
        """The examples that sentences (length > 0) and document ends (length 0) complete.

        The one loop over every sentence, so it keeps its state in locals.
        """
        examples = []
        pending, total, target = self._sentences, self._length, self._target_length
        for number, length in zip(numbers, lengths):
            if length:
                pending.append((number, length))
                total += length
                if total < target:
                    continue
            elif not total:
                continue
            examples.append(self._create_example(pending, target))
            pending, total, target = [], 0, self._target_length
        self._sentences, self._length = pending, total
        return examples

    def _carry_pending(self, ids, offsets):
        """Start a new sentence store: pending sentences first, then the block's."""
        old_ids, old_offsets = self.sentences
        pending = [number for number, _ in self._sentences]
        carried = np.concatenate([old_ids[old_offsets[n]:old_offsets[n + 1]] for n in pending]
                                 + [ids]).astype(np.int32, copy=False)
        carried_lengths = [length for _, length in self._sentences]
        new_offsets = np.concatenate((np.cumsum([0] + carried_lengths),
                                      offsets[1:] + sum(carried_lengths)))
        self.sentences = (carried, new_offsets)
        self._sentences = [(k, length) for k, length in enumerate(carried_lengths)]
        return len(pending)

    def _create_example(self, sentences, target_length):
        """Split ``sentences`` into segments A and B; draw the next example's target."""
        random = self._rng.random
        if random() < 0.1:
            first_target = 100000
        else:
            first_target = (target_length - 3) // 2  # room for [CLS] and two [SEP]
        first, second = [], []
        first_length = 0
        for number, length in sentences:
            if (not first or first_length + length < first_target
                    or (not second and first_length < first_target and random() < 0.5)):
                first.append(number)
                first_length += length
            else:
                second.append(number)
        if random() < 0.05:
            self._target_length = self._rng.randint(5, self._max_length)
        else:
            self._target_length = self._max_length
        return first, second


def examples_to_features(examples, sentences, max_seq_length, special_ids):
    """The shards' features (`shards.FEATURES`: ``input_ids``/``input_mask``/``segment_ids``),
    int64 arrays (num_examples, max_seq_length).

    Segment A is cut to ``max_seq_length - 2`` ids and B to what is left after
    ``[CLS] A [SEP]`` and the final ``[SEP]``; an empty B gets no ``[SEP]``.
    """
    ids, offsets = sentences
    segments = list(itertools.chain.from_iterable(examples))  # A and B of each example
    sizes = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
    number = np.fromiter(itertools.chain.from_iterable(segments), dtype=np.int64,
                         count=int(sizes.sum()))
    group = np.repeat(np.arange(len(segments)), sizes)  # 2 * row + segment
    row, segment = group // 2, group % 2
    lengths = offsets[number + 1] - offsets[number]
    totals = np.bincount(group, weights=lengths, minlength=2 * len(examples)).astype(np.int64)
    first_length = np.minimum(totals[0::2], max_seq_length - 2)
    second_length = np.minimum(totals[1::2], np.maximum(0, max_seq_length - first_length - 3))
    ends = np.cumsum(lengths)
    group_start = np.concatenate(([0], ends))[np.searchsorted(group, group, side="left")]
    within = ends - lengths - group_start  # where the sentence starts in its segment
    limit = np.where(segment == 0, first_length[row], second_length[row])
    take = np.clip(limit - within, 0, lengths)
    column = np.where(segment == 0, 1, first_length[row] + 2) + within
    input_ids = np.full((len(examples), max_seq_length), special_ids["pad"], dtype=np.int64)
    input_ids[np.repeat(row, take), fast_wordpiece.ragged_positions(column, take)] = \
        ids[fast_wordpiece.ragged_positions(offsets[number], take)]
    rows = np.arange(len(examples))
    input_ids[:, 0] = special_ids["cls"]
    input_ids[rows, first_length + 1] = special_ids["sep"]
    has_second = second_length > 0
    input_ids[rows[has_second], (first_length + second_length + 2)[has_second]] = special_ids["sep"]
    total = first_length + 2 + np.where(has_second, second_length + 1, 0)
    position = np.arange(max_seq_length)
    input_mask = (position < total[:, None]).astype(np.int64)
    segment_ids = ((position >= (first_length + 2)[:, None]) & (input_mask == 1)).astype(np.int64)
    return {shards.INPUT_IDS: input_ids, shards.INPUT_MASK: input_mask,
            shards.SEGMENT_IDS: segment_ids}
