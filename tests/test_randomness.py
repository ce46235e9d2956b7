import numpy as np
import tensorflow as tf

from electra_ko import randomness


def test_random_uniform_range_and_xla_parity():
    seed = tf.constant([3, 4])
    eager = randomness.random_uniform([64, 3, 5], seed).numpy()
    compiled = tf.function(lambda s: randomness.random_uniform([64, 3, 5], s), jit_compile=True)(seed)
    np.testing.assert_array_equal(eager, compiled.numpy())
    assert 0.0 < eager.min() and eager.max() < 1.0
    assert abs(eager.mean() - 0.5) < 0.03


def test_random_bits_are_per_example_across_replicas(two_cpu_strategy):
    """Two replicas holding halves of a batch draw what one device draws for all of it."""
    strategy = two_cpu_strategy
    seed = tf.constant([9, 9])
    whole = randomness.random_bits([4, 3, 5], seed).numpy()
    halves = strategy.run(tf.function(lambda: randomness.random_bits([2, 3, 5], seed)))
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
