#!/usr/bin/env bash
# The CUDA paths that CI (CPU only) never runs, for when a GPU is lent:
#   1. the Trainer with AMP bf16 (where the GPU has it natively), fp16 + GradScaler, fused AdamW,
#      and --compile, a few steps each on a small GPT;
#   2. each pretraining recipe's GPU-sized settings ("gpu" preset: what chapters 04, 05, 06, 07 run
#      on a GPU) for a few steps through `ptlearn train`.
# Appends a dated table to benchmarks/RESULTS.md. Without a CUDA GPU it says so and exits with
# status 2, writing nothing: no result here is ever made up.
#   usage: bash benchmarks/gpu_check.sh [steps]      (default 30 steps per run)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-30}"
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA GPU visible (torch.cuda.is_available() is False): nothing run, nothing recorded." >&2
  exit 2
fi
OUT="$(mktemp -d)"
python - "$STEPS" "$OUT" <<'PY'
import json, subprocess, sys, time
import torch
from ptlearn.device import autocast_dtype, describe_device, get_device, needs_grad_scaler
from ptlearn.models.gpt import GPT, GPTConfig
from ptlearn.training import TrainConfig, Trainer

steps, out = int(sys.argv[1]), sys.argv[2]
device = get_device("cuda")
major, minor = torch.cuda.get_device_capability(device)
rows = []


def batches(g):
    ids = torch.randint(0, 256, (32, 128), generator=g)
    return {"input_ids": ids, "labels": ids}


def run(name, **cfg):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, d_model=256, n_layers=4, n_heads=4, d_ff=1024, max_len=128))
    config = TrainConfig(lr=1e-3, max_steps=steps, warmup_steps=5, progress=False, device="cuda", **cfg)
    t = time.perf_counter()
    try:
        trainer = Trainer(model, config, batches)
        trainer.fit()
        torch.cuda.synchronize()
        _, losses = trainer.history.series("loss")
        fused = any(g.get("fused") for g in trainer.optimizer.param_groups)
        scaler = bool(getattr(trainer, "scaler", None) and trainer.scaler.is_enabled())
        rows.append(dict(run=name, ok=True, seconds=round(time.perf_counter() - t, 1),
                         amp=str(trainer.amp_dtype), scaler=scaler, fused=fused,
                         first_loss=round(losses[0], 3), last_loss=round(losses[-1], 3)))
    except Exception as err:  # recorded, not hidden
        rows.append(dict(run=name, ok=False, error=f"{type(err).__name__}: {err}"[:200]))


expected = autocast_dtype(device)
run(f"amp auto ({expected}, capability {major}.{minor})", amp="auto")
if major >= 8:
    run("amp bf16", amp="bf16")
run("amp fp16 + GradScaler", amp="fp16")
run("fp32 (amp off)", amp="off")
run("--compile, amp auto", amp="auto", compile=True)
for row in rows:
    if row["run"].startswith("amp fp16") and row.get("ok"):
        assert row["scaler"] == needs_grad_scaler(torch.float16), row
for model in ("gpt", "bert", "albert", "vit"):
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ptlearn.cli", "train", model, "--preset", "gpu",
                           "--steps", str(steps), "--device", "cuda", "--out", f"{out}/{model}"],
                          capture_output=True, text=True)
    rows.append(dict(run=f"ptlearn train {model} --preset gpu", ok=proc.returncode == 0,
                     seconds=round(time.perf_counter() - t, 1),
                     error=None if proc.returncode == 0 else proc.stderr.strip()[-200:]))
json.dump(dict(device=describe_device(device), torch=torch.__version__, steps=steps, rows=rows),
          open(f"{out}/gpu_check.json", "w"), indent=1)
PY
python - "$OUT/gpu_check.json" <<'PY' >> benchmarks/RESULTS.md
import json, sys, datetime
r = json.load(open(sys.argv[1]))
print(f"\n## GPU check ({datetime.date.today()}, `bash benchmarks/gpu_check.sh {r['steps']}`)\n")
print(f"{r['device']}, torch {r['torch']}, {r['steps']} steps per run.\n")
print("| run | ok | seconds | AMP dtype | GradScaler | fused AdamW | loss first -> last | error |")
print("|---|---|---|---|---|---|---|---|")
for x in r["rows"]:
    loss = f"{x['first_loss']} -> {x['last_loss']}" if "first_loss" in x else ""
    print(f"| {x['run']} | {x['ok']} | {x.get('seconds', '')} | {x.get('amp', '')} | {x.get('scaler', '')} "
          f"| {x.get('fused', '')} | {loss} | {x.get('error') or ''} |")
PY
echo "gpu_check: results appended to benchmarks/RESULTS.md"
