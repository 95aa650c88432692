"""Throughput: ptlearn vs HF transformers on the same weights, device, batch and threads.

For GPT (vs ``GPT2LMHeadModel``), BERT (``BertForPreTraining``, MLM + NSP heads on both sides)
and ViT (``ViTForImageClassification``), at a tiny size and at the base-model shape with short
sequences (64 tokens, batch 8), we time

- a training step: forward with labels, backward, AdamW step;
- inference: a forward pass under ``torch.no_grad()`` in eval mode.

Both models live in one process and hold the same weights (``model.to_hf()``, then HF's fast
``sdpa`` attention); runs alternate A B A B ... so that a change in the machine's load hits both
sides alike, and each side reports its median. Before timing, the logits are checked to agree.
``speedup`` = HF time / ptlearn time: above 1.0, ptlearn is faster.

    python benchmarks/throughput.py                   # everything, writes results/throughput.json
    python benchmarks/throughput.py --sizes tiny --repeats 5
    python benchmarks/throughput.py --profile gpt-base-train   # torch.profiler tables of one case
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ptlearn.models import (
    GPT,
    BertConfig,
    BertForPreTraining,
    GPTConfig,
    ViTConfig,
    ViTForImageClassification,
)

RESULTS = Path(__file__).resolve().parent / "results"
BATCH, SEQ = 8, 64
SHAPES = {  # (model, size) -> config fields; ViT images give 8 x 8 = 64 patches (+ [CLS])
    ("gpt", "tiny"): dict(vocab_size=1000, d_model=128, n_layers=2, n_heads=4, d_ff=512, max_len=64),
    ("gpt", "base"): dict(vocab_size=50257, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=1024),
    ("bert", "tiny"): dict(vocab_size=1000, d_model=128, n_layers=2, n_heads=2, d_ff=512, max_len=64),
    ("bert", "base"): dict(vocab_size=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512),
    ("vit", "tiny"): dict(image_size=32, patch_size=4, n_channels=3, d_model=128, n_layers=2, n_heads=2, d_ff=512),
    ("vit", "base"): dict(image_size=128, patch_size=16, n_channels=3, d_model=768, n_layers=12, n_heads=12, d_ff=3072),
}  # fmt: skip


def build(model: str, size: str) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """(ptlearn model, HF twin with the same weights and sdpa attention, a training batch)."""
    torch.manual_seed(0)
    fields = SHAPES[(model, size)]
    if model == "gpt":
        ours = GPT(GPTConfig(**fields))
        ids = torch.randint(fields["vocab_size"], (BATCH, SEQ))
        batch = {"input_ids": ids, "labels": ids}
    elif model == "bert":
        ours = BertForPreTraining(BertConfig(**fields))
        ids = torch.randint(5, fields["vocab_size"], (BATCH, SEQ))
        labels = torch.where(torch.rand(BATCH, SEQ) < 0.15, ids, -100)
        batch = {
            "input_ids": ids,
            "labels": labels,
            "next_sentence_label": torch.randint(2, (BATCH,)),
        }
    else:
        theirs = hf_vit(ViTConfig(**fields))
        ours = ViTForImageClassification.from_hf(theirs)
        side = fields["image_size"]
        batch = {
            "pixel_values": torch.rand(BATCH, 3, side, side),
            "labels": torch.randint(10, (BATCH,)),
        }
        return ours, theirs, batch
    theirs = ours.to_hf()
    theirs.set_attn_implementation("sdpa")  # HF's fast default (to_hf picks eager for the maps)
    return ours, theirs, batch


def hf_vit(c: ViTConfig):
    """A randomly initialised HF ``ViTForImageClassification`` of ptlearn config ``c``'s shape
    (ptlearn has no ViT ``to_hf``; ``from_hf`` copies its weights the other way)."""
    import transformers

    hf_config = transformers.ViTConfig(
        image_size=c.image_size, patch_size=c.patch_size, num_channels=c.n_channels,
        hidden_size=c.d_model, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
        intermediate_size=c.d_ff, hidden_act="gelu", layer_norm_eps=c.norm_eps,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=c.n_classes,
        attn_implementation="sdpa",
    )  # fmt: skip
    return transformers.ViTForImageClassification(hf_config)


def check_same_logits(ours, theirs, batch: dict) -> float:
    """Largest |logit difference| between the two models on the batch (they share weights)."""
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "pixel_values")}
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a = ours(**inputs).logits
        b = theirs(**inputs)
        b = b.prediction_logits if hasattr(b, "prediction_logits") else b.logits
    diff = (a - b).abs().max().item()
    if diff > 1e-3:
        raise AssertionError(f"ptlearn and HF disagree by {diff}: not the same computation.")
    return diff


def step_fn(model, batch: dict, mode: str):
    """A closure that runs one training step (fwd + bwd + AdamW) or one inference forward."""
    if mode == "infer":
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "pixel_values")}
        model.eval()

        def infer():
            with torch.no_grad():
                model(**inputs)

        return infer
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train():
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return train


def alternate(fns: dict, repeats: int, warmup: int = 2) -> dict:
    """Median seconds per call of each function, called in turn A B A B ... ``repeats`` times."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(model: str, size: str, mode: str, repeats: int) -> dict:
    ours, theirs, batch = build(model, size)
    diff = check_same_logits(ours, theirs, batch)
    fns = {"ptlearn": step_fn(ours, batch, mode), "hf": step_fn(theirs, batch, mode)}
    seconds = alternate(fns, repeats)
    tokens = BATCH * (SEQ if model != "vit" else ours.config.n_patches + 1)
    return {
        "model": model, "size": size, "mode": mode, "batch": BATCH, "tokens": tokens,
        "ptlearn_ms": round(1000 * seconds["ptlearn"], 2), "hf_ms": round(1000 * seconds["hf"], 2),
        "speedup": round(seconds["hf"] / seconds["ptlearn"], 3),
        "ptlearn_tokens_per_s": round(tokens / seconds["ptlearn"]),
        "max_logit_diff": diff, "repeats": repeats,
    }  # fmt: skip


def profile(case: str, rows: int = 15) -> None:
    """Print torch.profiler's top operators for both sides of one case, e.g. ``gpt-base-train``."""
    from torch.profiler import ProfilerActivity, profile

    model, size, mode = case.split("-")
    ours, theirs, batch = build(model, size)
    for name, net in (("ptlearn", ours), ("hf", theirs)):
        fn = step_fn(net, batch, mode)
        fn(), fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                fn()
        print(f"\n## {name} {case}\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    return {
        "cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| model | size | mode | ptlearn ms | HF ms | speedup (HF/ptlearn) | ptlearn tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['mode']} | {r['ptlearn_ms']:.1f} | "
            f"{r['hf_ms']:.1f} | {r['speedup']:.2f}x | {r['ptlearn_tokens_per_s']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt", "bert", "vit"])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "base"])
    parser.add_argument("--modes", nargs="+", default=["train", "infer"])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per side (tiny)")
    parser.add_argument("--base-repeats", type=int, default=5, help="timed calls per side (base)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--profile", help="print operator profiles of one case, e.g. gpt-base-train"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        return profile(args.profile)
    rows = []
    for size in args.sizes:
        for model in args.models:
            for mode in args.modes:
                repeats = args.base_repeats if size == "base" else args.repeats
                rows.append(measure(model, size, mode, repeats))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
