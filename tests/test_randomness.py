import numpy as np
import pytest
import tensorflow as tf

from electra_ko import randomness


def test_random_uniform_range_and_xla_parity():
    seed = tf.constant([3, 4])
    eager = randomness.random_uniform([64, 3, 5], seed).numpy()
    compiled = tf.function(lambda s: randomness.random_uniform([64, 3, 5], s), jit_compile=True)(seed)
    np.testing.assert_array_equal(eager, compiled.numpy())
    assert 0.0 < eager.min() and eager.max() < 1.0
    assert abs(eager.mean() - 0.5) < 0.03


@pytest.mark.parametrize("bits", [randomness.random_bits, randomness.hash_bits])
def test_bits_are_per_example_across_replicas(two_cpu_strategy, bits):
    """Two replicas holding halves of a batch draw what one device draws for all of it."""
    strategy = two_cpu_strategy
    seed = tf.constant([9, 9])
    whole = bits([4, 3, 5], seed).numpy()
    halves = strategy.run(tf.function(lambda: bits([2, 3, 5], seed)))
    parts = strategy.experimental_local_results(halves)
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in parts]), whole)


def test_dropout_zeroes_about_rate_and_rescales_the_rest():
    x = tf.ones([200, 50])
    out = randomness.dropout(x, 0.25, tf.constant([1, 2]), training=True).numpy()
    assert set(np.unique(out)) == {0.0, np.float32(1 / 0.75)}
    assert abs((out == 0).mean() - 0.25) < 0.02
    np.testing.assert_array_equal(randomness.dropout(x, 0.25, None, training=False), x)


def test_split_seeds_differ_and_repeat():
    first = [s.numpy().tolist() for s in randomness.split_seed(tf.constant([5, 6]), 3)]
    again = [s.numpy().tolist() for s in randomness.split_seed(tf.constant([5, 6]), 3)]
    assert first == again and len({tuple(s) for s in first}) == 3


def splitmix64_reference(seed, index):
    """SplitMix64 as published, in Python integers: the `index`-th output of the stream
    that `hash_bits` keys with `seed`, high 32 bits."""
    mask = (1 << 64) - 1

    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    gamma = randomness.GOLDEN_GAMMA
    start = mix((seed[0] * gamma + seed[1]) & mask)
    return mix((start + index * gamma) & mask) >> 32


def test_hash_bits_match_splitmix64_with_and_without_xla():
    seed = tf.constant([5, 7])
    eager = randomness.hash_bits([3, 2, 4], seed).numpy()
    compiled = tf.function(lambda s: randomness.hash_bits([3, 2, 4], s), jit_compile=True)(seed)
    np.testing.assert_array_equal(eager, compiled.numpy())
    expected = [splitmix64_reference((5, 7), i) for i in range(24)]
    assert eager.reshape(-1).tolist() == expected


def test_dropout_masks_of_different_seeds_are_independent():
    x = tf.ones([100, 1000])
    masks = [randomness.dropout(x, 0.1, tf.constant(s), training=True).numpy() > 0
             for s in ([1, 2], [1, 3], [2, 2])]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        both_kept = (masks[a] & masks[b]).mean()
        assert abs(both_kept - 0.81) < 0.005  # independent: 0.9 * 0.9
    bits = randomness.hash_bits([100, 1000], tf.constant([4, 4])).numpy().astype(np.float64)
    neighbours = np.corrcoef(bits.reshape(-1)[:-1], bits.reshape(-1)[1:])[0, 1]
    assert abs(neighbours) < 0.01 and abs(bits.mean() / 2**32 - 0.5) < 0.005
