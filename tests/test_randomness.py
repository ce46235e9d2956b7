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


@pytest.mark.parametrize("bits", [randomness.random_bits, randomness.hash_bits,
                                  randomness.hash_bits32])
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


def lowbias32_reference(seed, row, column):
    """`hash_bits32`'s bits for element `column` of example `row`, in Python integers."""
    mask = (1 << 32) - 1

    def mix(x):
        x = ((x ^ (x >> 16)) * 0x7FEB352D) & mask
        x = ((x ^ (x >> 15)) * 0x846CA68B) & mask
        return x ^ (x >> 16)

    words = [v & mask for v in seed] + [(v & ((1 << 64) - 1)) >> 32 for v in seed]
    key = mix(words[0] ^ mix(words[1] ^ mix(words[2] ^ mix(words[3]))))
    gamma = randomness.GOLDEN_GAMMA32
    row_key = mix(key ^ mix((row * gamma) & mask))
    return mix((row_key + column * gamma) & mask)


@pytest.mark.parametrize("seed", [(5, 7), (-3, 2**40 + 9)])
def test_hash_bits32_match_the_reference_with_and_without_xla(seed):
    tf_seed = tf.constant(seed, tf.int64)
    eager = randomness.hash_bits32([3, 2, 4], tf_seed).numpy()
    compiled = tf.function(lambda s: randomness.hash_bits32([3, 2, 4], s), jit_compile=True)(tf_seed)
    np.testing.assert_array_equal(eager, compiled.numpy())
    expected = [[lowbias32_reference(seed, r, c) for c in range(8)] for r in range(3)]
    assert eager.reshape(3, 8).tolist() == expected


def test_hash_bits32_are_uniform_and_uncorrelated():
    bits = randomness.hash_bits32([100, 1000], tf.constant([4, 4])).numpy().astype(np.float64)
    flat = bits.reshape(-1)
    assert abs(flat.mean() / 2**32 - 0.5) < 0.005
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(bits[:-1].reshape(-1), bits[1:].reshape(-1))[0, 1]) < 0.01  # rows
    other = randomness.hash_bits32([100, 1000], tf.constant([4, 5])).numpy().astype(np.float64)
    assert abs(np.corrcoef(flat, other.reshape(-1))[0, 1]) < 0.01


def test_dropout_uses_splitmix64_on_cpu_and_the_32_bit_hash_on_accelerators():
    x, seed = tf.ones([20, 30]), tf.constant([1, 2])
    try:
        for device, bits in (("TPU", randomness.hash_bits32), ("GPU", randomness.hash_bits32),
                             ("CPU", randomness.hash_bits)):
            randomness.use_dropout_bits_for(device)
            kept = randomness.dropout(x, 0.5, seed, training=True).numpy() > 0
            expected = bits([20, 30], seed).numpy() >= np.uint32(2**31)
            np.testing.assert_array_equal(kept, expected, err_msg=device)
    finally:
        randomness.use_dropout_bits_for("CPU")


def test_step_seed_depends_on_step_only():
    a, b = randomness.step_seed(42, 7), randomness.step_seed(42, tf.constant(7, tf.int64))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, randomness.step_seed(42, 8))
    assert not np.array_equal(a, randomness.step_seed(43, 7))
