"""Speed of one fine-tuning step: electra_ko's classifier against transformers/PyTorch.

Ours is the fine-tuning stage's own `classifier.Runner` (the shared `training.TrainStep`:
XLA-compiled loss and gradients, global-norm clipping, layer-wise AdamW), timed through
`train_epoch` on synthetic full-length reviews; the reference is
`ElectraForSequenceClassification` with torch AdamW and the same clipping, as a
transformers user writes it, in a subprocess of its own (so the two never share threads).
Both sides build the same architecture from the config's size preset.

    python benchmarks/finetune_step.py --size tiny  --batch_size 32 --seq_len 128 --steps 20
    python benchmarks/finetune_step.py --size small --batch_size 32 --seq_len 128 --steps 10

The last output line is one JSON object: `size`, `batch_size`, `seq_len`, `ours` and
`pytorch` (`step_s`, `examples_per_s`, `cpu_s_per_step`), `speedup` (ours over PyTorch,
examples/s), `cpu` (model and vector ISA: compare figures within one run only).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

VOCAB_SIZE = 32000
ARCHITECTURE = ("hidden_size", "embedding_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings")


def architecture(size):
    """The size preset's architecture keys, read from the fine-tuning config (no TF)."""
    from electra_ko import config as config_lib
    values = config_lib.load_config(config_lib.FINETUNE, model_size=size).to_dict()
    return {key: values[key] for key in ARCHITECTURE}


def cpu_description():
    """`model name` and the widest vector ISA of this CPU (figures vary between hosts)."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", ""):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = next((name for name in ("amx_tile", "avx512f", "avx2", "avx") if name in flags), "?")
    return f"{model} ({isa})"


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timing(steps, seconds, cpu, batch_size):
    return {"step_s": round(seconds / steps, 4), "examples_per_s": round(batch_size * steps / seconds, 1),
            "cpu_s_per_step": round(cpu / steps, 4)}


def synthetic_reviews(count, seq_len, seed=0):
    """Token ids of `count` full-length examples and their 0/1 labels."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB_SIZE, size=(count, seq_len), dtype=np.int32)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS] ... [SEP]
    return ids, rng.integers(0, 2, size=count).astype(np.int32)


def run_ours(args):
    from electra_ko import classifier, finetune, tasks
    from electra_ko import config as config_lib
    cfg = config_lib.load_config(
        config_lib.FINETUNE, model_size=args.size, vocab_size=VOCAB_SIZE,
        max_seq_length=args.seq_len, train_batch_size=args.batch_size,
        iterations_per_loop=args.steps, mixed_precision="float32")
    strategy, device = finetune.create_strategy(cfg)
    total = args.warmup + args.steps + 1
    runner = classifier.Runner(cfg, tasks.get_task("nsmc"), strategy, device, total, None)
    ids, labels = synthetic_reviews(total * args.batch_size, args.seq_len)
    features = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids),
                "lengths": np.full(len(ids), args.seq_len, np.int32)}
    data = classifier.Encoded(features, labels)
    batches = [np.arange(i * args.batch_size, (i + 1) * args.batch_size) for i in range(total)]
    started = time.perf_counter()
    runner.train_epoch(data, batches[:1 + args.warmup], "compile + warm-up")
    first = time.perf_counter() - started
    cpu, started = cpu_seconds(), time.perf_counter()
    runner.train_epoch(data, batches[1 + args.warmup:], "timed")
    result = timing(args.steps, time.perf_counter() - started, cpu_seconds() - cpu, args.batch_size)
    return dict(result, first_steps_s=round(first, 2))


def run_pytorch(args):
    import torch
    from transformers import ElectraConfig, ElectraForSequenceClassification
    torch.manual_seed(0)
    model = ElectraForSequenceClassification(ElectraConfig(
        vocab_size=VOCAB_SIZE, num_labels=2, **architecture(args.size)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, eps=1e-6, weight_decay=0.01)
    ids, labels = synthetic_reviews(args.batch_size * (args.warmup + args.steps), args.seq_len)
    ids, labels = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
    mask, segments = torch.ones_like(ids), torch.zeros_like(ids)
    model.train()

    def step(i):
        rows = slice(i * args.batch_size, (i + 1) * args.batch_size)
        loss = model(input_ids=ids[rows], attention_mask=mask[rows], token_type_ids=segments[rows],
                     labels=labels[rows]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    for i in range(args.warmup):
        step(i)
    cpu, started = cpu_seconds(), time.perf_counter()
    for i in range(args.warmup, args.warmup + args.steps):
        step(i)
    result = timing(args.steps, time.perf_counter() - started, cpu_seconds() - cpu, args.batch_size)
    return dict(result, threads=torch.get_num_threads())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", choices=["debug", "tiny", "small", "base"])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument("--framework", default="both", choices=["both", "ours", "pytorch"])
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.framework == "pytorch":
        print(json.dumps(run_pytorch(args)))
        return
    ours = run_ours(args)
    print(f"ours: {json.dumps(ours)}", flush=True)
    if args.framework == "ours":
        print(json.dumps(ours))
        return
    command = [sys.executable, os.path.abspath(__file__), "--framework", "pytorch",
               "--size", args.size, "--batch_size", str(args.batch_size), "--seq_len",
               str(args.seq_len), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    reference = json.loads(subprocess.run(command, check=True, capture_output=True, text=True)
                           .stdout.strip().splitlines()[-1])
    print(f"pytorch: {json.dumps(reference)}", flush=True)
    print(json.dumps({"size": args.size, "batch_size": args.batch_size, "seq_len": args.seq_len,
                      "ours": ours, "pytorch": reference,
                      "speedup": round(ours["examples_per_s"] / reference["examples_per_s"], 2),
                      "cpu": cpu_description(), "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
