#!/usr/bin/env bash
# Regenerate every figure in benchmarks/RESULTS.md (writes benchmarks/results/*.json and *.png).
#
#   bash benchmarks/run_all.sh            # everything: about 95 minutes on an idle 2-core machine
#   QUICK=1 bash benchmarks/run_all.sh    # fewer repeats and shorter budgets: a smoke test
#
# Run it on an otherwise idle machine: every figure is a time, and other jobs on the same cores
# slow ptlearn and its baselines alike only where the runs alternate (throughput.py). Each script
# records the load average next to its numbers. Needs the [dev] extras (transformers, sklearn)
# and the real data: export PTLEARN_DATA_DIR=/path/to/data (see DESIGN.md, "Data").
set -euo pipefail
cd "$(dirname "$0")/.."
#   TTQ_STEPS=900 bash benchmarks/run_all.sh   # also the step-matched GPT runs (see RESULTS.md)
if [[ "${QUICK:-0}" == "1" ]]; then
  REPEATS=2; BASE_REPEATS=1; DDP_STEPS=10; BUDGET_ARGS=(--time-budget 10)
else
  REPEATS=10; BASE_REPEATS=5; DDP_STEPS=60; BUDGET_ARGS=()
fi
echo "== machine"; grep -m1 "model name" /proc/cpuinfo || true; nproc; uptime
python -c "import torch, transformers; print('torch', torch.__version__, 'threads', torch.get_num_threads(), 'transformers', transformers.__version__)"

echo "== throughput: ptlearn vs HF transformers (CPU)"
python benchmarks/throughput.py --repeats "$REPEATS" --base-repeats "$BASE_REPEATS"

echo "== training step: ptlearn vs nanoGPT (CPU)"
python benchmarks/nanogpt_step.py $([[ "${QUICK:-0}" == "1" ]] && echo --rounds 4 --steps 3)

echo "== generation: KV cache vs none vs HF generate"
python benchmarks/kv_cache.py $([[ "${QUICK:-0}" == "1" ]] && echo --repeats 1)

echo "== attention scaling: written-out vs fused"
python benchmarks/attention_scaling.py

echo "== time to quality: GPT on Tiny Shakespeare, ViT on digits"
python benchmarks/time_to_quality.py gpt "${BUDGET_ARGS[@]}"
python benchmarks/time_to_quality.py gpt --reference "${BUDGET_ARGS[@]}"
python benchmarks/time_to_quality.py vit "${BUDGET_ARGS[@]}"
if [[ -n "${TTQ_STEPS:-}" ]]; then
  python benchmarks/time_to_quality.py gpt --steps "$TTQ_STEPS"
  python benchmarks/time_to_quality.py gpt --steps "$TTQ_STEPS" --reference
fi

echo "== ViT digits (helper script) and BERT pretraining"
python benchmarks/vit_digits.py "${BUDGET_ARGS[@]}"
python benchmarks/pretrain_bert.py "${BUDGET_ARGS[@]}"

echo "== CPU speedrun of chapter 12: 9 stages x 3 seeds x 90 s (about 45 minutes)"
python benchmarks/speedrun.py $([[ "${QUICK:-0}" == "1" ]] && echo --budget 5 --seeds 0)

echo "== multi-process (DDP over gloo) vs one process"
python benchmarks/ddp_scaling.py --steps "$DDP_STEPS"

if [[ "${QUICK:-0}" != "1" ]]; then
  echo "== every chapter top to bottom on this machine's cores (about 25 minutes)"
  python benchmarks/chapter_times.py
fi

echo "== widget redraw"
python benchmarks/widget_redraw.py

echo "== RESULTS.md"
python benchmarks/report.py
