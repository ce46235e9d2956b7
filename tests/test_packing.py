"""packing: how ELECTRA examples are cut from sentences ([CLS] A [SEP] B [SEP]), with exact ids."""
import numpy as np

from electra_ko import packing


class ScriptedRng:
    """Stands in for random.Random with a fixed list of draws."""

    def __init__(self, draws, randint_values=()):
        self._draws = list(draws)
        self._randints = list(randint_values)

    def random(self):
        return self._draws.pop(0)

    def randint(self, low, high):
        value = self._randints.pop(0)
        assert low <= value <= high
        return value


SPECIAL_IDS = {"cls": 2, "sep": 3, "pad": 0}


def sentence_store(sentences):
    """(flat ids, offsets) of token-id lists, as ``ExamplePacker.sentences`` holds them."""
    lengths = [len(sentence) for sentence in sentences]
    return (np.array([i for sentence in sentences for i in sentence], dtype=np.int32),
            np.cumsum([0] + lengths))


def pack(packer, lengths, blank=None):
    """Examples that one block of sentences with these lengths completes."""
    blank = [False] * len(lengths) if blank is None else blank
    return packer.pack_block(*sentence_store([[7] * n for n in lengths]), blank)


def feature_rows(examples, sentences, max_len):
    """Each example's ids without padding, and the length of its first segment."""
    features = packing.examples_to_features(examples, sentence_store(sentences), max_len,
                                            SPECIAL_IDS)
    lengths = features["input_mask"].sum(axis=1)
    return [(ids[:n].tolist(), int(n - segments.sum())) for ids, n, segments in
            zip(features["input_ids"], lengths, features["segment_ids"])]


def test_packer_splits_sentences_between_segments():
    # target 20 -> first segment target (20-3)//2 = 8. Draws: 0.5 two segments, 0.7 coin
    # flip sends the crossing sentence to B, 0.9 keeps the full target for the next one.
    packer = packing.ExamplePacker(20, ScriptedRng([0.5, 0.7, 0.9]))
    sentences = [[11, 12, 13], [14, 15, 16, 17], list(range(18, 31))]
    assert pack(packer, [3, 4]) == []
    assert pack(packer, [13]) == [([0, 1], [2])]
    # B is cut to 20 - 7 - 3 ids
    assert feature_rows([([0, 1], [2])], sentences, 20) == [
        ([2, 11, 12, 13, 14, 15, 16, 17, 3, *range(18, 28), 3], 9)]


def test_packer_coin_flip_sends_crossing_sentence_to_first_segment():
    # 3 + 6 crosses the first target 8 while B is empty: draw 0.2 < 0.5 keeps it in A
    packer = packing.ExamplePacker(20, ScriptedRng([0.5, 0.2, 0.9]))
    assert pack(packer, [3, 6, 12]) == [([0, 1], [2])]
    sentences = [[11, 12, 13], list(range(14, 20)), list(range(20, 32))]
    assert feature_rows([([0, 1], [2])], sentences, 20) == [
        ([2, *range(11, 20), 3, *range(20, 28), 3], 11)]


def test_packer_sentence_after_b_may_still_join_a():
    # A=[5 ids] < 8; 4 more would cross: coin 0.9 sends it to B; then 2 ids fit under 8: A
    packer = packing.ExamplePacker(20, ScriptedRng([0.5, 0.9, 0.9]))
    assert pack(packer, [5, 4, 2]) == []
    assert pack(packer, [9]) == [([0, 2], [1, 3])]


def test_packer_single_segment_and_short_target():
    # draw 0.05 < 0.1: A-only; draw 0.01 < 0.05: next target is randint -> 6
    packer = packing.ExamplePacker(10, ScriptedRng([0.05, 0.01, 0.5, 0.9], [6]))
    assert pack(packer, [12, 5, 1]) == [([0], []), ([1], [2])]  # 6 >= short target 6
    sentences = [list(range(20, 32)), [41, 42, 43, 44, 45], [46]]
    assert feature_rows([([0], []), ([1], [2])], sentences, 10) == [
        ([2, *range(20, 28), 3], 10),  # truncated to max_len - 2
        ([2, 41, 42, 43, 44, 45, 3, 46, 3], 7)]


def test_packer_flushes_document_end_and_counts_documents():
    packer = packing.ExamplePacker(50, ScriptedRng([0.5, 0.9, 0.5, 0.9]))
    # blank after blank: nothing to flush; a line that tokenises to nothing opens a document
    assert pack(packer, [2, 0, 0, 0, 0], [False, True, True, False, True]) == [([0], [])]
    assert packer.documents == 2
    assert pack(packer, [3, 0, 4], [False, False, False]) == []
    assert packer.end_document() == ([0, 2], [])  # numbered in the second block
    assert packer.end_document() is None
    assert packer.documents == 3


def test_pack_block_carries_pending_sentences_into_the_next_block():
    packer = packing.ExamplePacker(8, ScriptedRng([0.05, 0.9]))
    assert packer.pack_block(*sentence_store([[11, 12], [13]]), [False, False]) == []
    assert packer.pack_block(*sentence_store([[14, 15, 16, 17, 18]]), [False]) == [([0, 1, 2], [])]
    assert feature_rows([([0, 1, 2], [])], [[11, 12], [13], [14, 15, 16, 17, 18]], 8) == [
        ([2, 11, 12, 13, 14, 15, 16, 3], 8)]
    assert packer.sentences[0].tolist() == [11, 12, 13, 14, 15, 16, 17, 18]


def test_examples_to_features_layout():
    features = packing.examples_to_features([([0], [1]), ([2], [])],
                                            sentence_store([[10, 11], [12], [13]]), 8,
                                            SPECIAL_IDS)
    np.testing.assert_array_equal(features["input_ids"],
                                  [[2, 10, 11, 3, 12, 3, 0, 0], [2, 13, 3, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(features["input_mask"],
                                  [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(features["segment_ids"],
                                  [[0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
