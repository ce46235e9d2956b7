"""The fine-tuning model and how it trains: encoder + classification head, layer-wise AdamW,
length-bucketed batches and the compiled train / predict steps of one run.

`SequenceClassifier` is the ELECTRA encoder with Hugging Face's `ElectraClassificationHead`
on [CLS] (dropout, dense, GELU, dropout, out_proj); its weights carry google-research/electra
TF1 names (`tf1_weights`), the head under `classifier/`, which `electra_ko.checkpoints` maps
one-to-one onto transformers' `ElectraForSequenceClassification`. Layer-wise learning-rate decay follows
google-research/electra's `_get_layer_lrs`.

For speed on CPU and GPU the forward/backward pass is XLA-compiled and batches are padded
to a few widths (16, 32, 64, ... up to max_seq_length) instead of always to the max;
examples of similar length are batched together. On a TPU every batch is padded to
max_seq_length (one static shape, one compilation) and the TPU compiles the whole step.
No example is dropped: a last partial batch is padded with zero-weight rows. The loss is
summed on the device and read every `iterations_per_loop` steps; with static shapes
(TPU) those steps run in one device call.

`electra_ko.finetune` drives it: config, initial checkpoint, seeds, evaluation, outputs, CLI.
"""
import dataclasses
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from electra_ko import architecture, checkpoints, modeling, optimization, randomness, tasks, training

MIN_BUCKET = 16


# --------------------------------------------------------------------------- model


class SequenceClassifier(keras.Model):
    """ELECTRA encoder + Hugging Face `ElectraClassificationHead` on the [CLS] vector.

    Regression (KorSTS) is one output unit. Float32 outputs [B, num_outputs].
    """

    def __init__(self, encoder_config: architecture.EncoderConfig, num_outputs: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = encoder_config
        self.num_outputs = num_outputs
        self.electra = modeling.ElectraEncoder(encoder_config, name="electra")
        self.head_dense = modeling.dense(encoder_config.hidden_size, encoder_config, "dense", "gelu")
        self.out_proj = modeling.dense(num_outputs, encoder_config, "out_proj")
        self.electra.build()
        self.head_dense.build((None, encoder_config.hidden_size))
        self.out_proj.build((None, encoder_config.hidden_size))

    def call(self, input_ids, input_mask, segment_ids, training=False, seed=None):
        seeds = randomness.split_seed(seed, 3) if training else [None] * 3
        cls = self.electra(input_ids, input_mask, segment_ids, training=training,
                           seed=seeds[0])["cls_output"]
        rate = self.encoder_config.hidden_dropout_prob
        x = self.head_dense(randomness.dropout(cls, rate, seeds[1], training))
        x = self.out_proj(randomness.dropout(x, rate, seeds[2], training))
        return tf.cast(x, tf.float32)

    def tf1_weights(self):
        """[(TF1-style name, variable)]: encoder names as google-research/electra, the head
        under `classifier/` (Hugging Face's `classifier.dense` / `classifier.out_proj`)."""
        head = (modeling.dense_weights(self.head_dense, "classifier/dense")
                + modeling.dense_weights(self.out_proj, "classifier/out_proj"))
        return self.electra.tf1_weights("electra") + head


class ClassifierModel(keras.Model):
    """A fine-tuned model as a tower (`ElectraForSequenceClassification`): the
    `SequenceClassifier` called on a features dict -> logits [B, outputs]."""

    def __init__(self, config, num_outputs, **kwargs):
        super().__init__(**kwargs)
        self.encoder_config = config
        self.classifier = SequenceClassifier(config, num_outputs, name="classifier")

    def call(self, features):
        return self.classifier(features["input_ids"], features["input_mask"],
                               features["segment_ids"])

    def tf1_weights(self):
        return self.classifier.tf1_weights()


def layer_depth(tf1_name: str, num_layers: int) -> int:
    """google-research/electra's depths: embeddings 0, layer i -> i + 1, task head L + 2."""
    if "/embeddings/" in tf1_name or "/embeddings_project/" in tf1_name:
        return 0
    parts = tf1_name.split("/")
    if "encoder" in parts:
        return int(parts[parts.index("encoder") + 1][len("layer_"):]) + 1
    return num_layers + 2


def layerwise_lr_multipliers(tf1_weights, num_layers: int, decay: float) -> dict:
    """{variable path: decay ** (L + 2 - depth)}; decay 1 or None gives 1 everywhere.

    As the original, the top Transformer layer already gets decay**2 and the embeddings
    decay**(L + 2); only the task head trains at the full learning rate.
    """
    decay = 1.0 if not decay else decay
    return {variable.path: decay ** (num_layers + 2 - layer_depth(name, num_layers))
            for name, variable in tf1_weights}


def create_optimizer(cfg, model: SequenceClassifier, num_train_steps: int, precision: str):
    """AdamW with google-research/electra's layer-wise learning-rate decay and warm-up over
    `warmup_proportion` of the steps; make it under the strategy scope."""
    multipliers = layerwise_lr_multipliers(model.tf1_weights(),
                                           model.encoder_config.num_hidden_layers,
                                           cfg.layerwise_lr_decay)
    return optimization.create_optimizer(
        cfg, precision, num_train_steps,
        num_warmup_steps=int(round(cfg.warmup_proportion * num_train_steps)),
        lr_multipliers=multipliers)


# --------------------------------------------------------------------------- batching


def bucket_widths(max_seq_length: int, static: bool = False) -> list:
    """Padded widths of the batches: powers of two from MIN_BUCKET, then max_seq_length;
    only max_seq_length when shapes must be `static` (TPU)."""
    widths, width = [], MIN_BUCKET
    if static:
        return [max_seq_length]
    while width < max_seq_length:
        widths.append(width)
        width *= 2
    return widths + [max_seq_length]


@dataclasses.dataclass
class Encoded:
    """One split encoded to max_seq_length; labels int32 ids or float32 scores (or None)."""
    features: dict
    labels: Optional[np.ndarray]

    def __len__(self):
        return len(self.features["lengths"])


def encode_split(tokenizer, examples: tasks.Examples, max_seq_length: int) -> Encoded:
    return Encoded(tasks.encode(tokenizer, examples.text_a, examples.text_b, max_seq_length),
                   examples.labels)


def batch_order(lengths, batch_size, rng=None, chunk_batches=50):
    """Index batches. With `rng` (training): shuffled, then sorted by length within chunks
    of `chunk_batches` batches so each batch pads little, then batches shuffled. Without:
    sorted by length (evaluation; outputs are put back in order by index)."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, n, chunk):
        part = order[start:start + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def make_batch(data: Encoded, indices, batch_size, widths, regression):
    """Arrays of one batch padded to `batch_size` rows and the smallest bucket width.

    `weight` is 1/n_real for real rows and 0 for padding rows, so the summed weighted
    loss is the mean over real examples however the batch is split across replicas.
    """
    longest = int(data.features["lengths"][indices].max())
    width = next(w for w in widths if w >= longest)
    pad_rows = batch_size - len(indices)
    batch = {}
    for key in ("input_ids", "input_mask", "segment_ids"):
        array = data.features[key][indices, :width]
        batch[key] = np.pad(array, ((0, pad_rows), (0, 0)))
    weight = np.full(len(indices), 1.0 / len(indices), dtype=np.float32)
    batch["weight"] = np.pad(weight, (0, pad_rows))
    label_dtype = np.float32 if regression else np.int32
    labels = data.labels[indices] if data.labels is not None else np.zeros(len(indices))
    batch["labels"] = np.pad(labels.astype(label_dtype), (0, pad_rows))
    return batch


def batch_signature(regression, batch_size=None, width=None):
    ids = tf.TensorSpec([batch_size, width], tf.int32)
    return {"input_ids": ids, "input_mask": ids, "segment_ids": ids,
            "weight": tf.TensorSpec([batch_size], tf.float32),
            "labels": tf.TensorSpec([batch_size], tf.float32 if regression else tf.int32)}


# --------------------------------------------------------------------------- initial weights


@dataclasses.dataclass
class InitCheckpoint:
    """Encoder weights to start from, by Hugging Face name (torch layout), the sizes
    they imply, and the identity of the file they came from (see
    `finetune.load_init_checkpoint`)."""
    path: str
    tensors: dict
    sizes: dict
    sha256: str


def assign_encoder_weights(encoder: modeling.ElectraEncoder, init: InitCheckpoint):
    """Copy the encoder's tensors; heads of the checkpoint (discriminator, classifier) are
    not used. Missing tensors or wrong shapes are an error naming them."""
    problems = []
    for hf_name, variable, transposed in checkpoints.hf_weights(encoder.tf1_weights("electra")):
        value = init.tensors.get(hf_name)
        if value is None:
            problems.append(f"missing {hf_name}")
            continue
        value = checkpoints.switch_layout(value, transposed)
        if tuple(value.shape) != tuple(variable.shape):
            problems.append(f"{hf_name} has shape {tuple(value.shape)}, model wants "
                            f"{tuple(variable.shape)}")
            continue
        variable.assign(value)
    if problems:
        raise checkpoints.CheckpointError(f"--init_checkpoint {init.path} does not fit the model: "
                            + "; ".join(problems))


def token_state_spread(encoder: modeling.ElectraEncoder, data: Encoded, max_examples=64) -> float:
    """How much the encoder's output differs from token to token: the mean over hidden
    units of their std across the real tokens of `max_examples` examples, over their RMS.

    About 0.3-1 for a random or a healthy pretrained encoder. A pretraining run whose
    discriminator settled on a constant answer maps every token to nearly one vector
    (< 0.01); no fine-tuning recipe learns from such a checkpoint.
    """
    n = min(len(data), max_examples)
    width = int(data.features["lengths"][:n].max())
    inputs = [data.features[key][:n, :width] for key in ("input_ids", "input_mask", "segment_ids")]
    states = encoder(*(tf.constant(x) for x in inputs))["sequence_output"].numpy()
    real = states[inputs[1].astype(bool)].astype(np.float64)
    return float(real.std(axis=0).mean() / max(np.sqrt(np.mean(real ** 2)), 1e-12))


# --------------------------------------------------------------------------- training


def classification_task(model: SequenceClassifier, regression: bool) -> training.Task:
    """The trainer's `Task`: cross-entropy (or squared error) weighted per example; the
    `weight` of a batch's real rows adds up to 1 over all replicas (see `make_batch`)."""
    def loss_fn(batch, seed, training):
        outputs = model(batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                        training=training, seed=seed)
        if regression:
            losses = tf.square(outputs[:, 0] - batch["labels"])
        else:
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], outputs)
        return tf.reduce_sum(losses * batch["weight"]), {}
    return training.Task(model, loss_fn, step_seed=randomness.replica_step_seed,
                         loss_syncs_replicas=False)


class Runner:
    """Model, optimizer and training step of one seed's fine-tuning run."""

    def __init__(self, cfg, spec: tasks.TaskSpec, strategy, device_kind, num_train_steps,
                 init: Optional[InitCheckpoint]):
        self.cfg, self.spec, self.strategy = cfg, spec, strategy
        self.regression = spec.task_type == tasks.REGRESSION
        precision = optimization.precision_policy(cfg.mixed_precision, device_kind)
        keras.mixed_precision.set_global_policy(precision)
        randomness.use_dropout_bits_for(device_kind)
        num_outputs = 1 if self.regression else len(spec.labels)
        with strategy.scope():
            keras.utils.set_random_seed(cfg.seed)
            self.model = SequenceClassifier(architecture.EncoderConfig.from_config(cfg), num_outputs,
                                            name="electra_classifier")
            if init is not None:
                assign_encoder_weights(self.model.electra, init)
            optimizer = create_optimizer(cfg, self.model, num_train_steps, precision)
        self.train_step = training.TrainStep(
            strategy, training.LoopSettings.from_config(cfg),
            classification_task(self.model, self.regression), optimizer, precision,
            static_shapes=training.is_tpu(strategy))
        jit = cfg.jit_compile and not self.static_shapes
        self._forward = tf.function(self._outputs, jit_compile=jit)
        self._eval_fn = tf.function(self._distributed_eval_step)

    @property
    def static_shapes(self):
        """Batches of one width (a TPU's), run `iterations_per_loop` per device call."""
        return self.train_step.static_shapes

    @property
    def step(self):
        """The number of training steps run so far."""
        return self.train_step.global_step

    def _outputs(self, batch):
        return self.model(batch["input_ids"], batch["input_mask"], batch["segment_ids"])

    def _distributed_eval_step(self, batch):
        return self.strategy.gather(self.strategy.run(self._forward, args=(batch,)), axis=0)

    def _dataset(self, data, batches, size):
        widths = bucket_widths(self.cfg.max_seq_length, self.static_shapes)

        def generate():
            for indices in batches:
                yield make_batch(data, indices, size, widths, self.regression)

        signature = batch_signature(self.regression, size,
                                    widths[0] if self.static_shapes else None)
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
        return self.strategy.experimental_distribute_dataset(dataset)

    def train_epoch(self, data: Encoded, batches, description):
        """Run the given batches, `iterations_per_loop` per device call; returns the mean
        training loss."""
        iterator = iter(self._dataset(data, batches, self.cfg.train_batch_size))
        sums = self.train_step.sums
        sums.reset()
        done = 0
        bar = tqdm(total=len(batches), desc=description, unit="batch", leave=False)
        while done < len(batches):
            n = min(self.cfg.iterations_per_loop, len(batches) - done)
            self.train_step.run_steps(iterator, n)
            done += n
            bar.update(n)
            bar.set_postfix(loss=f"{float(sums.read()['loss']) / done:.4f}")
        bar.close()
        return float(sums.read()["loss"]) / max(done, 1)

    def predict(self, data: Encoded, description="eval") -> np.ndarray:
        """Outputs for every example, in the input order (last partial batch included)."""
        batches = batch_order(data.features["lengths"], self.cfg.eval_batch_size)
        outputs = np.zeros((len(data), self.model.num_outputs), dtype=np.float32)
        bar = tqdm(total=len(batches), desc=description, unit="batch", leave=False)
        for indices, batch in zip(batches, self._dataset(data, batches, self.cfg.eval_batch_size)):
            outputs[indices] = self._eval_fn(batch).numpy()[:len(indices)]
            bar.update(1)
        bar.close()
        return outputs

    def get_weights(self):
        return [v.numpy() for v in self.model.weights]

    def set_weights(self, values):
        for variable, value in zip(self.model.weights, values):
            variable.assign(value)
