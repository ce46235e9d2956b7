"""Reference point: one ELECTRA pretraining step written with Hugging Face transformers (PyTorch).

The speed target of `benchmarks/pretrain_step.py` is stated against this: an
ElectraForMaskedLM generator and an ElectraForPreTraining discriminator sharing their
embeddings, 15% dynamic masking, Gumbel sampling, loss = MLM + 50 * RTD, AdamW. Written
the way a transformers user writes it (the generator scores every position).

    python benchmarks/pretrain_step_torch.py --size small --batch_size 32 --steps 5

Last output line: one JSON object (`framework`, `config`, `batch_size`, `seq_len`,
`step_s`, `seq_per_s`, `threads`).
"""
import argparse
import json
import time

import torch
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining

from electra_ko import architecture  # sizes only: no TensorFlow

SIZES = ("tiny", "small")


def build_models(size: str, vocab_size: int, seq_len: int):
    preset = architecture.SIZE_PRESETS[size]
    sizes = {key: preset[key] for key in architecture.PRESET_KEYS}
    generator = dict(sizes, **architecture.generator_sizes(
        preset["hidden_size"], preset["num_hidden_layers"], preset["generator_hidden_size"]))
    common = dict(vocab_size=vocab_size, max_position_embeddings=max(512, seq_len))
    disc = ElectraForPreTraining(ElectraConfig(**sizes, **common))
    gen = ElectraForMaskedLM(ElectraConfig(**generator, **common))
    gen.electra.embeddings = disc.electra.embeddings  # shared embeddings, as in ELECTRA
    gen.generator_lm_head.weight = disc.electra.embeddings.word_embeddings.weight
    return gen, disc


def electra_step(gen, disc, optimizer, input_ids, mask_prob=0.15, mask_id=4):
    masked = torch.rand(input_ids.shape) < mask_prob
    gen_inputs = input_ids.masked_fill(masked, mask_id)
    labels = input_ids.masked_fill(~masked, -100)
    gen_out = gen(input_ids=gen_inputs, labels=labels)
    with torch.no_grad():
        logits = gen_out.logits[masked]
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_min(1e-9)).clamp_min(1e-9))
        sampled = (logits + gumbel).argmax(-1)
    disc_inputs = input_ids.clone()
    disc_inputs[masked] = sampled
    disc_labels = (disc_inputs != input_ids).float()
    disc_out = disc(input_ids=disc_inputs, labels=disc_labels)
    loss = gen_out.loss + 50.0 * disc_out.loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(list(gen.parameters()) + list(disc.parameters()), 1.0)
    optimizer.step()
    return loss.item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--vocab_size", type=int, default=32000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    gen, disc = build_models(args.size, args.vocab_size, args.seq_len)
    params = {id(p): p for p in list(gen.parameters()) + list(disc.parameters())}
    optimizer = torch.optim.AdamW(params.values(), lr=5e-4, betas=(0.9, 0.999), eps=1e-6,
                                  weight_decay=0.01)
    input_ids = torch.randint(5, args.vocab_size, (args.batch_size, args.seq_len))
    for _ in range(args.warmup):
        electra_step(gen, disc, optimizer, input_ids)
    start = time.perf_counter()
    for step in range(args.steps):
        loss = electra_step(gen, disc, optimizer, input_ids)
        print(f"step {step}: loss {loss:.3f}", flush=True)
    step_s = (time.perf_counter() - start) / args.steps
    print(json.dumps({"framework": "pytorch-transformers", "config": args.size,
                      "batch_size": args.batch_size, "seq_len": args.seq_len,
                      "vocab_size": args.vocab_size, "step_s": round(step_s, 4),
                      "seq_per_s": round(args.batch_size / step_s, 2),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
