"""Optimizer: schedule values, weight-decay exclusions, global-norm clipping, precision."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from electra_ko import config, optimization


def _cfg(**values):
    base = dict(model_size="debug", learning_rate=1e-3, num_train_steps=100, num_warmup_steps=10,
                weight_decay_rate=0.01)
    return config.load_config(config.PRETRAIN, **dict(base, **values))


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_schedule_matches_electra_formula(power):
    schedule = optimization.learning_rate_schedule(_cfg(lr_decay_power=power))
    for step in (0, 1, 5, 10, 11, 50, 99, 100, 150):
        expected = 1e-3 * (1 - min(step, 100) / 100) ** power * min(1.0, step / 10)
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_schedule_without_warmup_starts_at_peak():
    schedule = optimization.learning_rate_schedule(_cfg(num_warmup_steps=0))
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(25)) == pytest.approx(0.75e-3)


def test_schedule_round_trips_through_keras_serialisation():
    schedule = optimization.learning_rate_schedule(_cfg())
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule))
    assert restored.get_config() == schedule.get_config()
    assert float(restored(42)) == float(schedule(42))


def _tiny_model():
    inputs = keras.Input([3])
    hidden = keras.layers.Dense(4, name="dense")(inputs)
    outputs = keras.layers.LayerNormalization(name="LayerNorm")(hidden)
    return keras.Model(inputs, outputs)


def test_weight_decay_skips_layernorm_and_bias():
    """With zero gradients an AdamW step moves only the decayed variables: w -= lr*wd*w."""
    model = _tiny_model()
    for variable in model.trainable_variables:
        variable.assign(tf.ones(variable.shape))
    optimizer = optimization.create_optimizer(_cfg(num_warmup_steps=0, weight_decay_rate=0.1))
    optimization.build_optimizer(optimizer, model.trainable_variables)
    zeros = [tf.zeros(v.shape) for v in model.trainable_variables]
    optimizer.apply(zeros, model.trainable_variables)
    moved = {v.path: float(v.numpy().ravel()[0]) for v in model.trainable_variables}
    assert moved == {"dense/kernel": pytest.approx(1 - 1e-3 * 0.1),
                     "dense/bias": 1.0, "LayerNorm/gamma": 1.0, "LayerNorm/beta": 1.0}


def test_lamb_is_selectable_and_decays_the_same_variables():
    model = _tiny_model()
    optimizer = optimization.create_optimizer(_cfg(optimizer="lamb"))
    assert isinstance(optimizer, keras.optimizers.Lamb)
    decayed = [v.path for v in model.trainable_variables if optimizer._use_weight_decay(v)]
    assert decayed == ["dense/kernel"]


def test_reduce_and_clip_scales_to_global_norm():
    grads = [tf.constant([3.0, 0.0]), tf.constant([[4.0]])]  # global norm 5
    clipped, norm = optimization.reduce_and_clip(grads, clip_norm=1.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0].numpy(), [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(clipped[1].numpy(), [[0.8]], rtol=1e-6)
    unclipped, _ = optimization.reduce_and_clip(grads, clip_norm=10.0)
    np.testing.assert_allclose(unclipped[0].numpy(), [3.0, 0.0])


def test_clipping_of_loss_scaled_gradients_acts_on_true_norm():
    grads = [tf.constant([300.0, 400.0])]  # true gradient [3, 4] at loss scale 100
    clipped, norm = optimization.reduce_and_clip(grads, clip_norm=1.0, scale=100.0)
    assert float(norm) == pytest.approx(5.0)
    np.testing.assert_allclose(clipped[0].numpy() / 100.0, [0.6, 0.8], rtol=1e-6)


def _token_type_gradient(rows_looked_up):
    """The gradient a gather gives a [2, 3] token-type table when every token has type 0
    and d(loss)/d(row) = 1: one IndexedSlices row per token, all with index 0."""
    return tf.IndexedSlices(tf.ones([rows_looked_up, 3]), tf.zeros([rows_looked_up], tf.int64),
                            tf.constant([2, 3], tf.int64))


def test_reduce_and_clip_sums_repeated_sparse_rows_into_a_dense_gradient():
    (grad,), norm = optimization.reduce_and_clip([_token_type_gradient(4096)], clip_norm=0.0)
    assert isinstance(grad, tf.Tensor)
    np.testing.assert_array_equal(grad.numpy(), [[4096.0] * 3, [0.0] * 3])
    assert float(norm) == pytest.approx(4096.0 * np.sqrt(3.0))


def test_adamw_step_from_repeated_sparse_rows_equals_the_dense_step():
    """Regression: Keras' Adam squared the 4096 duplicate rows one by one, so the
    token-type embedding moved 64x lr per step (batch 32 x length 128)."""
    cfg = _cfg(num_warmup_steps=0, weight_decay_rate=0.0)
    tables = [keras.Variable(tf.zeros([2, 3]), name="token_type_embeddings") for _ in range(2)]
    for table, grad in zip(tables, [_token_type_gradient(4096), tf.constant([[4096.0] * 3, [0.0] * 3])]):
        optimizer = optimization.create_optimizer(cfg)
        optimization.build_optimizer(optimizer, [table])
        grads, _ = optimization.reduce_and_clip([grad], clip_norm=0.0)
        optimizer.apply(grads, [table])
    np.testing.assert_allclose(tables[0].numpy(), tables[1].numpy(), rtol=1e-6)
    # Adam's first step without bias correction is lr * sign(gradient) * (1 - beta1) /
    # sqrt(1 - beta2) = 3.16e-3 (1e-3 with it), never 64 times that
    first_step = 1e-3 * 0.1 / np.sqrt(1e-3)
    np.testing.assert_allclose(tables[0].numpy(), [[-first_step] * 3, [0.0] * 3], rtol=1e-5)


def reference_adam_weight_decay(weights, gradients, lr, wd, beta1, beta2, eps, decays):
    """google-research/electra's AdamWeightDecayOptimizer in NumPy: no bias correction."""
    m, v = np.zeros_like(weights), np.zeros_like(weights)
    for step, grad in enumerate(gradients):
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad ** 2
        update = m / (np.sqrt(v) + eps) + (wd * weights if decays else 0.0)
        weights = weights - lr(step) * update
    return weights


@pytest.mark.parametrize("name,decays", [("kernel", True), ("bias", False)])
def test_adamw_without_bias_correction_matches_the_reference_update(name, decays):
    cfg = _cfg(num_warmup_steps=3, weight_decay_rate=0.1, num_train_steps=20)
    assert cfg.adam_bias_correction is False  # the reference's behaviour is the default
    rng = np.random.default_rng(0)
    start = rng.standard_normal((3, 4)).astype(np.float32)
    gradients = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(6)]
    variable = keras.Variable(start, name=name)
    optimizer = optimization.create_optimizer(cfg)
    optimization.build_optimizer(optimizer, [variable])
    for grad in gradients:
        optimizer.apply([tf.constant(grad)], [variable])
    schedule = optimization.learning_rate_schedule(cfg)
    expected = reference_adam_weight_decay(
        start.astype(np.float64), gradients, lambda step: float(schedule(step)), 0.1,
        cfg.adam_beta1, cfg.adam_beta2, cfg.adam_epsilon, decays)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_adam_bias_correction_can_be_switched_on():
    variables = {}
    for corrected in (False, True):
        variables[corrected] = keras.Variable(tf.zeros([2]), name="bias")
        optimizer = optimization.create_optimizer(_cfg(num_warmup_steps=0,
                                                       adam_bias_correction=corrected))
        optimization.build_optimizer(optimizer, [variables[corrected]])
        optimizer.apply([tf.constant([1.0, -1.0])], [variables[corrected]])
    np.testing.assert_allclose(variables[True].numpy(), [-1e-3, 1e-3], rtol=1e-4)
    np.testing.assert_allclose(variables[False].numpy(), [-1e-3, 1e-3] / np.sqrt(1e-3) * 0.1,
                               rtol=1e-4)


def test_float16_policy_wraps_optimizer_for_loss_scaling():
    optimizer = optimization.create_optimizer(_cfg(), "mixed_float16")
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, optimization.AdamW)


@pytest.mark.parametrize("requested,device,expected", [
    ("auto", "TPU", "mixed_bfloat16"), ("auto", "GPU", "mixed_float16"),
    ("auto", "CPU", "float32"), ("float32", "TPU", "float32"),
    ("mixed_bfloat16", "CPU", "mixed_bfloat16")])
def test_precision_policy(requested, device, expected):
    assert optimization.precision_policy(requested, device) == expected


def test_layerwise_adamw_scales_update_and_weight_decay():
    a, b = keras.Variable([1.0, 2.0], name="a"), keras.Variable([1.0, 2.0], name="b")
    optimizer = optimization.AdamW(lr_multipliers={a.path: 1.0, b.path: 0.25},
                                   learning_rate=0.1, weight_decay=0.5, epsilon=1e-6)
    optimizer.build([a, b])
    grad = tf.constant([0.5, -2.0])
    optimizer.apply([grad, grad], [a, b])
    for variable, lr in ((a, 0.1), (b, 0.025)):
        # Keras' bias-corrected first Adam step is lr * g / (|g| + eps / sqrt(1 - beta_2));
        # the decoupled decay, applied first, is lr * weight_decay * param
        decayed = np.array([1.0, 2.0]) * (1 - lr * 0.5)
        g = np.array([0.5, -2.0])
        expected = decayed - lr * g / (np.abs(g) + 1e-6 / np.sqrt(1 - 0.999))
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5)
