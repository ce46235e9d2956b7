"""Copy task: does our training stack learn to use context as fast as transformers does?

Every line of the synthetic corpus is six made-up two-syllable words followed by the same
six words again. The words are drawn uniformly from 100, so a masked word cannot be
guessed from word frequencies (about 1% MLM accuracy) but is given away by its twin in
the other half of the line: a model that uses context climbs towards 100%, and a
discriminator can spot a replaced token by comparing it with its twin (AUC towards 1).
What counts is the comparison: a run of ours that stays at chance while the reference
learns points to a bug; both stacks stalling points to the recipe (measured: at tiny
size, 600 steps, the plain masked LM learns in both, the ELECTRA discriminator in neither).

Both stacks train on the same shards (built by our own `electra_ko.vocab` and
`electra_ko.build_data`), with the same config (`configs/tiny.json` plus the overrides
below), batches, schedule, optimizer and masking recipe:

* `ours_mlm`, `ours_electra`: `python -m electra_ko.pretrain` in a subprocess, exactly
  as a user runs it (`electra_objective=false` for the masked LM);
* `torch_mlm`, `torch_electra`: Hugging Face transformers in PyTorch, sized from the same
  config: an `ElectraForMaskedLM` alone, or an `ElectraForMaskedLM` generator plus an
  `ElectraForPreTraining` discriminator sharing the embeddings (generator output tied to
  them), loss = gen_weight * MLM + disc_weight * RTD. Batches come from our own reader
  (`electra_ko.data.make_dataset`, same seed), read before training; masking follows
  `electra_ko.masking.mask_inputs`; AdamW without decay on biases and LayerNorm, the
  warm-up and linear decay of `electra_ko.optimization`, gradient clipping.

    python experiments/copy_task.py --steps 600 \
        --runs ours_mlm,torch_mlm,ours_electra,torch_electra --work_dir /tmp/copy --seed 42

`--set key=value` (repeatable) adds config overrides to our runs, e.g.
`--set embedding_sharing=gdes` or `--set adam_bias_correction=true`; `--warm_start` starts
`ours_electra` from `ours_mlm`'s finished model (`--init_checkpoint`: the masked LM fills the
discriminator's encoder and the embeddings; put `ours_mlm` first in `--runs`, or reuse the
one a former run left in `--work_dir`).

Metrics are averaged like our driver's progress lines: `mlm_acc` over each loop of
`iterations_per_loop` (50) steps, `disc_auc` over the loop's maskable tokens (real tokens
other than [CLS]/[SEP]/[PAD]). A row is
printed every 100 steps (and at the last step) per run, then a Markdown table of all
runs; the last output line is one JSON object: `steps`, `seed`, `dropout`, and `runs`
with, per run, `step`, `mlm_acc`, `disc_auc` (ELECTRA runs) lists and `wall_seconds`.
Work files (corpus, vocab, shards: reused while the corpus is unchanged; each run's
model directory and log, rebuilt every time) go to `--work_dir`.
"""
import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm import tqdm
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from electra_ko import architecture, config, shards, storage, vocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "configs/tiny.json"
RUN_NAMES = ("ours_mlm", "torch_mlm", "ours_electra", "torch_electra")
SEQ_LEN = 64
LOOP_STEPS = 50      # iterations_per_loop: the window each reported metric is averaged over
REPORT_EVERY = 100
NUM_DOCUMENTS, LINES_PER_DOCUMENT, WORDS_PER_HALF = 3000, 4, 6


# ----------------------------------------------------------------------- corpus and shards


def made_up_words():
    """100 two-syllable 'words': 10 first syllables x 10 second syllables, Hangul
    syllables picked by code point (every 37th from U+AC00), so no real text is used."""
    syllables = [chr(0xAC00 + 37 * i) for i in range(20)]
    return [first + second for first in syllables[:10] for second in syllables[10:]]


def corpus_text(seed):
    """Documents of 4 lines (six random words, then the same six again), blank-line separated."""
    rng = random.Random(seed)
    words = made_up_words()
    documents = []
    for _ in range(NUM_DOCUMENTS):
        halves = [rng.choices(words, k=WORDS_PER_HALF) for _ in range(LINES_PER_DOCUMENT)]
        documents.append("".join(" ".join(half + half) + "\n" for half in halves))
    return "\n".join(documents)


def run_cli(command):
    """Run one of our CLIs from the repo root, as printed; stop the benchmark if it fails."""
    print("$ " + shlex.join(command), flush=True)
    process = subprocess.run([sys.executable] + command[1:], cwd=REPO, check=False)
    if process.returncode:
        raise SystemExit(f"error: the command above failed (exit {process.returncode})")


def shards_complete(shards_dir):
    manifest = storage.join(shards_dir, shards.MANIFEST)
    return storage.exists(manifest) and bool(storage.read_json(manifest).get("complete"))


def prepare_data(work_dir, seed):
    """work_dir/corpus.txt, vocab/ and shards/, the last two built by our CLIs. They are
    reused when present and the corpus is byte-identical (same seed); else rebuilt."""
    corpus, vocab_dir, shards_dir = (os.path.join(work_dir, name)
                                     for name in ("corpus.txt", "vocab", "shards"))
    text = corpus_text(seed)
    old_text = None
    if os.path.exists(corpus):
        with open(corpus, encoding="utf-8") as f:
            old_text = f.read()
    if old_text != text:
        for stale in (vocab_dir, shards_dir):
            shutil.rmtree(stale, ignore_errors=True)
        with open(corpus, "w", encoding="utf-8") as f:
            f.write(text)
    if not os.path.exists(os.path.join(vocab_dir, "vocab.txt")):
        run_cli(["python", "-m", "electra_ko.vocab", "--input", corpus, "--output_dir", vocab_dir,
                 "--vocab_size", "400", "--num_unused", "0"])
    if not shards_complete(shards_dir):
        run_cli(["python", "-m", "electra_ko.build_data", "--corpus", corpus, "--vocab", vocab_dir,
                 "--output_dir", shards_dir, "--max_seq_length", str(SEQ_LEN), "--num_shards", "2",
                 "--seed", str(seed), "--overwrite"])
    return vocab_dir, shards_dir


def run_overrides(args, name):
    """The `--set key=value` overrides of run `name`, on top of configs/tiny.json: the
    torch runs read the very same config through `electra_ko.config`."""
    overrides = [f"max_seq_length={SEQ_LEN}", f"num_train_steps={args.steps}",
                 f"num_warmup_steps={args.steps // 6}", f"iterations_per_loop={LOOP_STEPS}",
                 f"save_checkpoints_steps={args.steps}", f"hidden_dropout_prob={args.dropout}",
                 f"attention_probs_dropout_prob={args.dropout}", f"seed={args.seed}"]
    if name.endswith("_mlm"):
        overrides.append("electra_objective=false")
    elif name == "ours_electra" and args.warm_start:
        overrides.append(f"init_checkpoint={os.path.join(args.work_dir, 'ours_mlm')}")
    return overrides + (args.set if name.startswith("ours_") else [])


# ----------------------------------------------------------------------- reporting


class Curve:
    """One run's metrics at every REPORT_EVERY-th step and at the last, printed as they come."""

    def __init__(self, name, steps):
        self.name, self.steps = name, steps
        self.metrics = ["mlm_acc"] + (["disc_auc"] if name.endswith("_electra") else [])
        self.points = {"step": [], **{metric: [] for metric in self.metrics}}

    def add(self, step, values):
        if step % REPORT_EVERY and step != self.steps:
            return
        self.points["step"].append(step)
        for metric in self.metrics:
            self.points[metric].append(values[metric])
        row = "  ".join(f"{metric}={values[metric]:.4f}" for metric in self.metrics)
        tqdm.write(f"{self.name:<14} step {step:>6}  {row}")


def markdown_table(curves):
    """One row per reported step, one column per run and metric."""
    columns = [(name, metric) for name, points in curves.items()
               for metric in points if metric not in ("step", "wall_seconds")]
    steps = sorted({step for points in curves.values() for step in points["step"]})
    lines = ["| step | " + " | ".join(f"{name} {metric}" for name, metric in columns) + " |",
             "|---:|" + "---:|" * len(columns)]
    for step in steps:
        cells = []
        for name, metric in columns:
            points = curves[name]
            value = points[metric][points["step"].index(step)] if step in points["step"] else None
            cells.append("-" if value is None else f"{value:.3f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def without_nan(value):
    """JSON has no NaN: an undefined AUC (a window without replaced tokens) becomes null."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nan(item) for item in value]
    return None if isinstance(value, float) and math.isnan(value) else value


# ----------------------------------------------------------------------- our stack


TRAIN_LINE = re.compile(r"^train step=(\d+)/\d+ (.*)$")


def parse_train_line(line):
    """(step, {metric: value}) from the driver's greppable `train step=...` line, else None."""
    match = TRAIN_LINE.match(line.strip())
    if not match:
        return None
    pairs = (pair.split("=", 1) for pair in match.group(2).split())
    return int(match.group(1)), {key: float(value) for key, value in pairs if key != "eta"}


def run_ours(name, overrides, vocab_dir, shards_dir, work_dir, steps):
    """`python -m electra_ko.pretrain` in a subprocess; its output goes to work_dir/<name>.log."""
    model_dir = os.path.join(work_dir, name)
    shutil.rmtree(model_dir, ignore_errors=True)  # the driver would resume from its checkpoint
    command = ["python", "-m", "electra_ko.pretrain", "--config", CONFIG, "--vocab_file", vocab_dir,
               "--pretrain_tfrecords", shards_dir, "--model_dir", model_dir]
    for override in overrides:
        command += ["--set", override]
    print("$ " + shlex.join(command), flush=True)
    curve = Curve(name, steps)
    log_path = model_dir + ".log"
    with open(log_path, "w", encoding="utf-8") as log, tqdm(total=steps, desc=name) as bar:
        process = subprocess.Popen([sys.executable] + command[1:], cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for line in process.stdout:
            log.write(line)
            parsed = parse_train_line(line)
            if parsed:
                step, values = parsed
                bar.update(step - bar.n)
                curve.add(step, values)
    if process.wait():
        raise SystemExit(f"error: {name} failed (exit {process.returncode}); see {log_path}")
    return curve.points


# ----------------------------------------------------------------------- transformers reference


def in_fresh_process(function, *args):
    """function(*args) in a spawned interpreter, so TensorFlow (our reader) and PyTorch
    never share a process with another run's thread pools, and memory is freed after."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as executor:
        return executor.submit(function, *args).result()


def read_batches(shards_dir, cfg, steps):
    """The first `steps` batches our driver's reader yields for this seed, as int64
    tensors (ids, input_mask, segment_ids); read up front so that tf.data's threads do
    not compete with PyTorch during training."""
    # imports TensorFlow: only in the torch runs' own process
    from electra_ko import data
    files = data.shard_files(shards_dir)
    compression = data.compression_of(data.read_manifest(shards_dir))
    dataset = data.make_dataset(files, cfg.train_batch_size, cfg.max_seq_length, compression,
                                training=True, seed=cfg.seed)
    return [tuple(torch.from_numpy(batch[key].astype(np.int64)) for key in data.FEATURES)
            for batch in dataset.take(steps).as_numpy_iterator()]


def electra_config(cfg, vocab_size, sizes=None):
    """transformers' ElectraConfig of the discriminator `cfg` describes (`sizes`: another
    encoder's sizes, the generator's)."""
    values = {key: getattr(cfg, key) for key in architecture.HF_CONFIG_KEYS}
    return ElectraConfig(**dict(values, vocab_size=vocab_size, **(sizes or {})))


def torch_models(cfg, vocab_size):
    """[masked LM of the discriminator's size] or [generator, discriminator] sharing the
    embeddings, the generator's output layer tied to them (as our ElectraPretrainer)."""
    if not cfg.electra_objective:
        return [ElectraForMaskedLM(electra_config(cfg, vocab_size))]
    discriminator = ElectraForPreTraining(electra_config(cfg, vocab_size))
    generator = ElectraForMaskedLM(electra_config(cfg, vocab_size, cfg.generator_sizes()))
    generator.electra.embeddings = discriminator.electra.embeddings
    generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight
    return [generator, discriminator]


def unique_parameters(models):
    """(name, parameter) pairs of all models, each shared tensor once (for the optimizer
    and for the gradient norm, which would otherwise count shared embeddings twice)."""
    named = {}
    for model in models:
        for name, param in model.named_parameters():
            named.setdefault(id(param), (name, param))
    return list(named.values())


def adamw(named_parameters, cfg):
    """AdamW without weight decay where ours has none (biases, LayerNorm)."""
    from electra_ko.optimization import NO_DECAY_PATTERNS

    def decays(name):
        return not any(pattern in name for pattern in NO_DECAY_PATTERNS)
    groups = [{"params": [p for n, p in named_parameters if decays(n)],
               "weight_decay": cfg.weight_decay_rate},
              {"params": [p for n, p in named_parameters if not decays(n)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, eps=cfg.adam_epsilon,
                             betas=(cfg.adam_beta1, cfg.adam_beta2))


def lr_factor(step, cfg):
    """`optimization.WarmupPolynomialDecay` / learning_rate (step 0 trains with lr 0)."""
    decay = (1.0 - min(step, cfg.num_train_steps) / cfg.num_train_steps) ** cfg.lr_decay_power
    return decay * min(1.0, step / cfg.num_warmup_steps) if cfg.num_warmup_steps > 0 else decay


def mask_batch(ids, input_mask, objective, vocab_size):
    """`masking.mask_inputs`' recipe: round(mask_prob x real tokens) positions (at least 1,
    at most max_predictions_per_seq) drawn without replacement among real tokens other
    than [PAD]/[CLS]/[SEP]/[MASK]; mask_token_fraction of them become [MASK],
    random_token_fraction a uniform random id (BERT-style MLM only), the rest stay."""
    candidates = maskable_tokens(ids, input_mask, objective)
    count = torch.round(input_mask.sum(1) * objective.mask_prob).clamp(
        1, objective.max_predictions_per_seq)
    keys = torch.rand(ids.shape).masked_fill(~candidates, -1.0)
    rank = keys.argsort(1, descending=True).argsort(1)
    masked = candidates & (rank < count[:, None])
    action = torch.rand(ids.shape)
    inputs = ids.clone()
    inputs[masked & (action < objective.mask_token_fraction)] = objective.mask_id
    random_token = masked & (action >= objective.mask_token_fraction) & (
        action < objective.mask_token_fraction + objective.random_token_fraction)
    inputs[random_token] = torch.randint(vocab_size, ids.shape)[random_token]
    return inputs, masked


def maskable_tokens(ids, input_mask, objective):
    """`masking.maskable`: real tokens other than [PAD]/[CLS]/[SEP]/[MASK]."""
    specials = torch.tensor(
        [objective.pad_id, objective.cls_id, objective.sep_id, objective.mask_id])
    return input_mask.bool() & ~torch.isin(ids, specials)


def torch_step_loss(models, batch, objective, vocab_size):
    """The loss of one batch and its step metrics (discriminator scores of maskable tokens
    kept for the loop's AUC)."""
    ids, input_mask, segment_ids = batch
    inputs, masked = mask_batch(ids, input_mask, objective, vocab_size)
    generator = models[0]
    gen = generator(input_ids=inputs, attention_mask=input_mask, token_type_ids=segment_ids,
                    labels=ids.masked_fill(~masked, -100))
    step = {"mlm_acc": (gen.logits[masked].argmax(-1) == ids[masked]).float().mean().item()}
    if len(models) == 1:
        return gen.loss, step
    with torch.no_grad():
        probs = torch.softmax(gen.logits[masked] / objective.temperature, dim=-1)
        fake = ids.clone()
        fake[masked] = torch.multinomial(probs, 1).squeeze(-1)
    replaced = (fake != ids).float()  # a sample equal to the original counts as original
    disc = models[1](input_ids=fake, attention_mask=input_mask, token_type_ids=segment_ids,
                     labels=replaced)
    counted = maskable_tokens(ids, input_mask, objective)
    step.update(disc_scores=disc.logits[counted].detach().numpy(),
                disc_labels=replaced[counted].numpy())
    return objective.gen_weight * gen.loss + objective.disc_weight * disc.loss, step


def loop_metrics(window):
    """Metrics of one loop as our driver reports them: mean step accuracy, pooled AUC."""
    metrics = {"mlm_acc": float(np.mean([step["mlm_acc"] for step in window]))}
    if "disc_labels" in window[0]:
        labels = np.concatenate([step["disc_labels"] for step in window])
        scores = np.concatenate([step["disc_scores"] for step in window])
        metrics["disc_auc"] = (float(roc_auc_score(labels, scores))
                               if 0 < labels.sum() < len(labels) else float("nan"))
    return metrics


def run_torch(name, overrides, vocab_dir, shards_dir, steps, threads):
    """The transformers reference of run `name`; meant for `in_fresh_process`."""
    # imports TensorFlow: only in this process
    from electra_ko import masking
    cfg = config.load_config(config.PRETRAIN, os.path.join(REPO, CONFIG), overrides)
    tokenizer = vocab.load_tokenizer(vocab_dir)
    objective = masking.ObjectiveConfig.from_config(cfg, tokenizer.special_ids)
    batches = read_batches(shards_dir, cfg, steps)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    models = torch_models(cfg, tokenizer.vocab_size)
    named_parameters = unique_parameters(models)
    params = [param for _, param in named_parameters]
    optimizer = adamw(named_parameters, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    curve, window = Curve(name, steps), []
    for model in models:
        model.train()
    for step, batch in enumerate(tqdm(batches, desc=name), start=1):
        loss, step_metrics = torch_step_loss(models, batch, objective, tokenizer.vocab_size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_norm)
        optimizer.step()
        schedule.step()
        window.append(step_metrics)
        if step % LOOP_STEPS == 0 or step == steps:
            curve.add(step, loop_metrics(window))
            window = []
    return curve.points


# ----------------------------------------------------------------------- CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps of every run")
    parser.add_argument("--runs", default=",".join(RUN_NAMES),
                        help=f"comma-separated subset of {','.join(RUN_NAMES)} (default: all)")
    parser.add_argument("--work_dir", required=True, help="corpus, vocab, shards, runs and logs")
    parser.add_argument("--seed", type=int, default=42, help="corpus, shards and training seed")
    parser.add_argument("--dropout", type=float, default=0.1,
                        help="hidden_dropout_prob and attention_probs_dropout_prob of all runs")
    parser.add_argument("--torch_threads", type=int, default=0,
                        help="intra-op threads of the torch runs (0 = PyTorch's default); 1 is "
                        "far faster when other processes keep the cores busy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override of our runs (repeatable), e.g. "
                        "embedding_sharing=gdes (a masked LM ignores it)")
    parser.add_argument("--warm_start", action="store_true",
                        help="start ours_electra from ours_mlm's model (run ours_mlm first)")
    args = parser.parse_args(argv)
    args.runs = [run.strip() for run in args.runs.split(",") if run.strip()]
    unknown = sorted(set(args.runs) - set(RUN_NAMES))
    if unknown or not args.runs:
        parser.error(f"--runs: unknown or empty {', '.join(unknown)} "
                     f"(choose from {', '.join(RUN_NAMES)})")
    args.work_dir = os.path.abspath(args.work_dir)
    if (args.warm_start and "ours_electra" in args.runs
            and "ours_mlm" not in args.runs[:args.runs.index("ours_electra")]
            and not os.path.isdir(os.path.join(args.work_dir, "ours_mlm"))):
        parser.error("--warm_start: put ours_mlm before ours_electra in --runs")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if not 0.0 <= args.dropout < 1.0:
        parser.error("--dropout must be in [0, 1)")
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # for our CLIs and the torch runs' reader
    os.makedirs(args.work_dir, exist_ok=True)
    vocab_dir, shards_dir = prepare_data(args.work_dir, args.seed)
    curves = {}
    for name in args.runs:
        started = time.time()
        overrides = run_overrides(args, name)
        if name.startswith("ours_"):
            points = run_ours(name, overrides, vocab_dir, shards_dir, args.work_dir, args.steps)
        else:
            points = in_fresh_process(run_torch, name, overrides, vocab_dir, shards_dir, args.steps,
                                      args.torch_threads)
        curves[name] = dict(points, wall_seconds=round(time.time() - started, 1))
    print(markdown_table(curves))
    print(json.dumps(without_nan({"steps": args.steps, "seed": args.seed, "dropout": args.dropout,
                                  "runs": curves}), allow_nan=False))


if __name__ == "__main__":
    main()
