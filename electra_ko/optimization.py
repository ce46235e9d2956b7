"""Optimizer, learning-rate schedule and precision policy of both stages.

* Schedule: google-research/electra's -- polynomial decay (`lr_decay_power`, 1 = linear)
  from `learning_rate` to 0 at `num_train_steps`, multiplied by a linear warm-up factor
  `min(1, step / num_warmup_steps)`. Like the original, step 0 trains with lr 0.
* AdamW (or LAMB) with decoupled weight decay that skips LayerNorm and bias variables;
  fine-tuning's AdamW scales each variable's learning rate (and so its decay) by a
  multiplier: google-research/electra's layer-wise decay.
  Pretraining's AdamW does not correct Adam's moment estimates for their zero start
  unless `adam_bias_correction` is set, as google-research/electra's
  `AdamWeightDecayOptimizer`: its first steps are up to (1 - beta1) / sqrt(1 - beta2)
  = 3.2x larger than bias-corrected Adam's, the gap closing over a few thousand steps.
* Gradients are made dense, summed across replicas and clipped by their *global* norm
  in `reduce_and_clip` before the optimizer sees them. Keras 3 would clip each replica's
  local gradient before its own all-reduce, which is not the same update as on one
  device; our optimizers therefore skip that second all-reduce.
* Precision: bfloat16 on TPU, float16 with dynamic loss scaling on GPU, float32 on CPU,
  unless the `mixed_precision` config key says otherwise.
"""
import keras
import tensorflow as tf

# Substrings of variable *names* (Keras 3: the short name, e.g. "gamma") and of paths
# that mark LayerNorm scale/offset and biases. Imported checkpoints may carry the
# original TF1 names ("LayerNorm/gamma"), which these patterns also cover.
NO_DECAY_PATTERNS = ("bias", "beta", "gamma", "LayerNorm", "layer_norm")


class _PreReducedGradients:
    """Mixin: gradients arrive already summed across replicas (see `reduce_and_clip`)."""

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


@keras.saving.register_keras_serializable(package="electra_ko")
class AdamW(_PreReducedGradients, keras.optimizers.AdamW):
    """Keras AdamW fed with gradients already reduced across replicas.

    `bias_correction=False` updates as google-research/electra's AdamWeightDecayOptimizer:
    w -= lr * m / (sqrt(v) + epsilon) with the raw moving averages m and v (weight decay
    unchanged: decoupled, from the same w).

    `lr_multipliers` ({variable path: factor}) scales each variable's learning rate, and
    so its decoupled weight decay, applied in `update_step` at the variable's own rate as
    google-research/electra does (`lr * (adam_update + weight_decay * param)`).
    """

    def __init__(self, *args, bias_correction=True, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias_correction = bias_correction
        self.lr_multipliers = None if lr_multipliers is None else dict(lr_multipliers)
        self._ordered_multipliers = []

    def build(self, var_list):
        if self.lr_multipliers is not None:
            missing = [v.path for v in var_list if v.path not in self.lr_multipliers]
            if missing:
                raise ValueError(f"no learning-rate multiplier for {', '.join(missing)}")
            self._ordered_multipliers = [self.lr_multipliers[v.path] for v in var_list]
        super().build(var_list)

    def _apply_weight_decay(self, variables):
        if self.lr_multipliers is None:  # else per variable in `update_step`
            super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        if self.lr_multipliers is not None:
            multiplier = self._ordered_multipliers[self._get_variable_index(variable)]
            learning_rate = tf.cast(learning_rate, variable.dtype) * multiplier
            if self.weight_decay and self._use_weight_decay(variable):
                variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype)
                                    * learning_rate)
        if self.bias_correction:
            return super().update_step(gradient, variable, learning_rate)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        gradient = tf.cast(gradient, variable.dtype)
        self.assign_add(m, (gradient - m) * (1.0 - self.beta_1))
        self.assign_add(v, (tf.square(gradient) - v) * (1.0 - self.beta_2))
        self.assign_sub(variable, tf.cast(learning_rate, variable.dtype) * m
                        / (tf.sqrt(v) + self.epsilon))
        return None

    def get_config(self):
        return {**super().get_config(), "bias_correction": self.bias_correction,
                "lr_multipliers": self.lr_multipliers}


@keras.saving.register_keras_serializable(package="electra_ko")
class Lamb(_PreReducedGradients, keras.optimizers.Lamb):
    """Keras LAMB fed with gradients already reduced across replicas."""


@keras.saving.register_keras_serializable(package="electra_ko")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = lr * (1 - min(step, T) / T) ** power * min(1, step / warmup)."""

    def __init__(self, learning_rate, num_train_steps, num_warmup_steps, power=1.0):
        self.learning_rate = float(learning_rate)
        self.num_train_steps = int(num_train_steps)
        self.num_warmup_steps = int(num_warmup_steps)
        self.power = float(power)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = tf.minimum(step, self.num_train_steps) / self.num_train_steps
        decayed = self.learning_rate * (1.0 - progress) ** self.power
        if self.num_warmup_steps <= 0:
            return decayed
        return decayed * tf.minimum(1.0, step / self.num_warmup_steps)

    def get_config(self):
        return dict(learning_rate=self.learning_rate, num_train_steps=self.num_train_steps,
                    num_warmup_steps=self.num_warmup_steps, power=self.power)


def learning_rate_schedule(cfg, num_train_steps=None, num_warmup_steps=None):
    """The schedule a config describes (the arguments override its step counts)."""
    values = cfg.to_dict()
    return WarmupPolynomialDecay(
        cfg.learning_rate, num_train_steps or values["num_train_steps"],
        values["num_warmup_steps"] if num_warmup_steps is None else num_warmup_steps,
        values.get("lr_decay_power", 1.0))


def create_optimizer(cfg, precision_policy="float32", num_train_steps=None, num_warmup_steps=None,
                     lr_multipliers=None):
    """The optimizer either stage's config describes, wrapped for loss scaling under float16:
    AdamW or LAMB (`optimizer`), the schedule of `learning_rate`, `num_train_steps`,
    `num_warmup_steps` and `lr_decay_power` (the arguments override the steps), AdamW's
    `adam_bias_correction` and `lr_multipliers` (layer-wise decay). Keys a config does not
    have (fine-tuning's) take the Keras defaults: bias-corrected AdamW, betas 0.9 and 0.999,
    linear decay.

    Make it under the strategy scope; `build_optimizer` before tracing a step.
    """
    values = cfg.to_dict()
    schedule = learning_rate_schedule(cfg, num_train_steps, num_warmup_steps)
    kind = values.get("optimizer", "adamw")
    if kind == "lamb" and lr_multipliers is not None:
        raise ValueError("layer-wise learning rates need optimizer adamw")
    extra = ({"bias_correction": values.get("adam_bias_correction", True),
              "lr_multipliers": lr_multipliers} if kind == "adamw" else {})
    optimizer = {"adamw": AdamW, "lamb": Lamb}[kind](
        learning_rate=schedule, weight_decay=cfg.weight_decay_rate,
        beta_1=values.get("adam_beta1", 0.9), beta_2=values.get("adam_beta2", 0.999),
        epsilon=cfg.adam_epsilon, **extra)
    optimizer.exclude_from_weight_decay(var_names=list(NO_DECAY_PATTERNS))
    if precision_policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_optimizer(optimizer, variables):
    """Create the slot variables now, under the caller's strategy scope.

    Keras 3 optimizers first used inside `strategy.run` in a `tf.function` otherwise
    fail with "You must feed a value for placeholder tensor".
    """
    optimizer.build(variables)
    return optimizer


def loss_scale(optimizer):
    """The current dynamic loss scale (1 when the optimizer does not scale)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.cast(optimizer.dynamic_scale, tf.float32)
    return tf.constant(1.0)


def dense_gradients(grads):
    """Sum the rows of sparse (`tf.IndexedSlices`) gradients into dense tensors.

    A gather's gradient lists one row per looked-up token, the same row many times
    (the token-type table: 2 rows, batch * length entries). Keras 3's Adam squares those
    rows one by one, so its second moment holds the sum of squares instead of the
    square of the sum: the update grows up to sqrt(#duplicates) times (64x at batch 32,
    length 128), and `tf.clip_by_global_norm` miscounts the norm the same way.
    """
    return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]


def reduce_and_clip(grads, clip_norm, scale=1.0):
    """Sum per-replica gradients across replicas, then clip them by global norm.

    Sparse gradients are made dense first (see `dense_gradients`). `scale` is the loss
    scale the gradients carry: the clip threshold is scaled with it so clipping acts on
    the true gradient. Returns (gradients, true global norm).
    """
    grads = dense_gradients(grads)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    if clip_norm and clip_norm > 0:
        grads, norm = tf.clip_by_global_norm(grads, clip_norm * scale)
    else:
        norm = tf.linalg.global_norm(grads)
    return grads, norm / scale


def precision_policy(requested, device_kind):
    """The Keras dtype policy name for a `mixed_precision` config value and device kind.

    `device_kind` is "TPU", "GPU" or "CPU"; "auto" picks bfloat16 on TPU, float16 (with
    loss scaling) on GPU and float32 on CPU.
    """
    if requested != "auto":
        return requested
    return {"TPU": "mixed_bfloat16", "GPU": "mixed_float16"}.get(device_kind, "float32")
