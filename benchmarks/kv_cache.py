"""KV cache: greedy generation with and without it, and against HF ``GPT2LMHeadModel.generate``.

Without a cache every step runs the whole prefix through the model again, so step t costs O(t)
token-passes and generating n tokens costs O(n^2). With the cache each step runs only the newest
token and reads the earlier keys/values back: n steps of O(1) token-passes (the attention itself
still reads t cached keys, which is cheap next to the projections and the MLP).

    python benchmarks/kv_cache.py                 # 6 layers, 256 wide, 8 heads; 256 new tokens
    python benchmarks/kv_cache.py --repeats 1     # a quick check

Every run is greedy, and the script asserts that all of them produce the same tokens. HF runs the
same weights (converted with ``GPT.to_hf()``). Results go to ``benchmarks/results/kv_cache.json``.
On a machine shared with other busy processes pass ``--threads 1`` (or set
``OMP_WAIT_POLICY=PASSIVE``): spin-waiting OpenMP threads slow down badly when oversubscribed.
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

from ptlearn.models import GPT, GPTConfig

RESULTS = Path(__file__).resolve().parent / "results" / "kv_cache.json"
CONFIG = dict(vocab_size=512, d_model=256, n_layers=6, n_heads=8, d_ff=1024, max_len=512)


def timed(generate, repeats: int) -> tuple[torch.Tensor, float]:
    """(tokens, median seconds) over ``repeats`` runs after one warm-up run."""
    tokens = generate()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        again = generate()
        seconds.append(time.perf_counter() - start)
        assert torch.equal(again, tokens), "greedy decoding is not deterministic"
    return tokens, statistics.median(seconds)


def redraw(model: GPT, std: float) -> GPT:
    """Weights ~ N(0, std): a random model with decisive (not near-tied) next-token logits, so
    the greedy tokens do not hinge on float rounding."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:  # matrices; biases and LayerNorms keep their init
                p.normal_(0.0, std)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-hf", action="store_true", help="skip the HF comparison")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = redraw(GPT(GPTConfig(**CONFIG)), std=0.1)
    prompt = torch.randint(0, CONFIG["vocab_size"], (1, args.prompt_len))
    n = args.new_tokens
    runs = {
        "ptlearn, KV cache": lambda: model.generate(prompt, n, temperature=0),
        "ptlearn, no cache": lambda: model.generate(prompt, n, temperature=0, use_cache=False),
    }
    if not args.no_hf:
        import transformers

        transformers.logging.set_verbosity_error()
        hf = model.to_hf()
        kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        runs["HF GPT2LMHeadModel.generate, cache"] = lambda: hf.generate(prompt, **kw)
        runs["HF GPT2LMHeadModel.generate, no cache"] = lambda: hf.generate(
            prompt, use_cache=False, **kw
        )
    rows, reference = [], None
    with torch.inference_mode():
        for name, generate in runs.items():
            tokens, seconds = timed(generate, args.repeats)
            reference = tokens if reference is None else reference
            assert torch.equal(tokens, reference), f"{name} generated different tokens"
            rows.append({"run": name, "seconds": seconds, "tokens_per_s": n / seconds})
            print(f"{name:40s} {seconds:7.3f} s  {n / seconds:8.1f} tokens/s", flush=True)
    speedup = rows[1]["seconds"] / rows[0]["seconds"]
    print(f"KV-cache speed-up (ptlearn): {speedup:.1f}x  (goal >= 3x)")
    result = {
        "model": CONFIG,
        "prompt_len": args.prompt_len,
        "new_tokens": n,
        "repeats": args.repeats,
        "greedy_tokens_identical": True,
        "runs": rows,
        "speedup_cache_vs_no_cache": speedup,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "machine": platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
