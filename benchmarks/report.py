"""Write ``benchmarks/RESULTS.md`` from the JSON files in ``benchmarks/results/``.

    python benchmarks/report.py        # run by benchmarks/run_all.sh after every benchmark

Every table names the command that produced it and the machine it ran on; a benchmark whose JSON
file is missing is listed as "not run". The prose around the tables is in ``NOTES`` below and
says what the numbers mean; the numbers themselves come only from the JSON files.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def load(name: str):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_section() -> str:
    tp = load("throughput")
    if not tp:
        return "Machine: not recorded (run `python benchmarks/throughput.py`)."
    m = tp["machine"]
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['threads']} threads, "
        f"transformers {m['transformers']}; no GPU. Load average while the throughput runs "
        f"started: {m['load_average']}."
    )


def throughput_section() -> str:
    tp = load("throughput")
    if not tp:
        return "Not run: `python benchmarks/throughput.py`."
    rows = [
        [r["model"], r["size"], r["mode"], f"{r['ptlearn_ms']:.1f}", f"{r['hf_ms']:.1f}",
         f"**{r['speedup']:.2f}x**", f"{r['ptlearn_tokens_per_s']:,}", f"{r['max_logit_diff']:.1e}"]
        for r in tp["rows"]
    ]  # fmt: skip
    header = ["model", "size", "mode", "ptlearn ms", "HF ms", "speed-up (HF / ptlearn)",
              "ptlearn tokens/s", "max logit diff"]  # fmt: skip
    return table(header, rows)


def generation_section() -> str:
    kv = load("kv_cache")
    if not kv:
        return "Not run: `python benchmarks/kv_cache.py`."
    rows = [[r["run"], f"{r['seconds']:.2f}", f"{r['tokens_per_s']:.1f}"] for r in kv["runs"]]
    m = kv["model"]
    return (
        f"GPT with {m['n_layers']} layers, d_model {m['d_model']}, vocabulary {m['vocab_size']}; "
        f"prompt {kv['prompt_len']} tokens, {kv['new_tokens']} new tokens, greedy, best of "
        f"{kv['repeats']}; {kv['threads']} thread(s), load average {kv['load_average_1min']:.1f}. "
        f"Greedy tokens identical with and without the cache and vs HF: "
        f"{kv['greedy_tokens_identical']}.\n\n" + table(["run", "seconds", "tokens/s"], rows)
    )


def attention_section() -> str:
    att = load("attention_scaling")
    if not att:
        return "Not run: `python benchmarks/attention_scaling.py`."
    by_t: dict[int, dict] = {}
    for r in att["rows"]:
        by_t.setdefault(r["T"], {})[r["path"]] = r
    rows = []
    for t, paths in sorted(by_t.items()):
        w, f = paths.get("written-out"), paths.get("fused")
        rows.append([
            t,
            f"{w['ms']:.1f}" if w else "-", f"{f['ms']:.1f}" if f else "-",
            f"{w['peak_extra_mib']:.1f}" if w else "-", f"{f['peak_extra_mib']:.1f}" if f else "-",
        ])  # fmt: skip
    header = ["T", "written-out ms", "fused ms", "written-out peak MiB", "fused peak MiB"]
    return table(header, rows) + "\n\n![attention scaling](results/attention_scaling.png)"


def time_to_quality_section() -> str:
    ttq = load("time_to_quality")
    if not ttq:
        return "Not run: `python benchmarks/time_to_quality.py gpt` (and `vit`)."
    rows = []
    for r in ttq.values():
        metric = (
            f"test accuracy {r['val_accuracy']:.4f}"
            if "val_accuracy" in r
            else f"val loss {r['val_loss']:.4f}"
        )
        rows.append([
            f"`{r['command']}`", metric, r["steps"], f"{r['seconds']:.1f}",
            f"{r['tokens_per_s']:,.0f}", f"{r['load_average_before']} / {r['load_average_after']}",
        ])  # fmt: skip
    header = ["command", "result", "steps", "train s", "tokens/s", "load before / after"]
    seeds = [r["val_loss"] for name, r in ttq.items() if re.fullmatch(r"gpt(-seed\d+)?", name)]
    if len(seeds) < 2:
        return table(header, rows)
    return "\n".join([
        table(header, rows),
        "",
        f"`ptlearn train gpt` (90 s) over {len(seeds)} seeds: median val loss "
        f"**{statistics.median(seeds):.3f}**, range {min(seeds):.3f}-{max(seeds):.3f}.",
    ])  # fmt: skip


def nanogpt_section() -> str:
    r = load("nanogpt_step")
    if not r:
        return "Not run: `python benchmarks/nanogpt_step.py`."
    ms, mfu = r["ms_per_step"], r["mfu"]
    q1, q3 = r["ratio_quartiles"]
    lo, hi = r["ratio_min_max"]
    names = {
        "ptlearn": "ptlearn GPT + ptlearn's optimizer (fused AdamW)",
        "nanogpt": "nanoGPT model.py + its configure_optimizers (per-tensor AdamW)",
        "ptlearn model, nanogpt optimizer": "ptlearn GPT + nanoGPT's optimizer (model only)",
    }
    rows = [[names.get(k, k), f"{ms[k]:.1f}", f"{100 * mfu[k]:.1f}%"] for k in ms]
    model_only = ""
    if "model_only" in r:
        m = r["model_only"]
        model_only = (
            f" Model code alone (both with nanoGPT's optimizer): **{m['median']:.3f}** "
            f"(quartiles {m['quartiles'][0]:.3f}-{m['quartiles'][1]:.3f})."
        )
    return "\n".join([
        table(["side", "ms per training step (median)", "MFU"], rows),
        "",
        f"Step-time ratio ptlearn / nanoGPT: **{r['ratio_median']:.3f}** (median of {r['rounds']} "
        f"rounds of {r['steps_per_round']} steps each side; quartiles {q1:.3f}-{q3:.3f}, range "
        f"{lo:.3f}-{hi:.3f}); below 1.0 ptlearn is faster.{model_only} Model FLOPs per step "
        f"{r['model_flops_per_step'] / 1e9:.2f} G; this CPU's float32 matmul peak "
        f"{r['matmul_peak_gflops']:.1f} GFLOP/s at {r['threads']} threads; load average "
        f"{[round(x, 1) for x in r['load_average']]} at the end.",
    ])  # fmt: skip


def speedrun_section() -> str:
    r = load("speedrun")
    if not r:
        return "Not run: `python benchmarks/speedrun.py`."
    rows = [
        [s["stage"], s["change"], f"{s['mean']:.3f} ± {s['spread']:.3f}",
         " / ".join(f"{run['val_loss']:.3f}" for run in s["runs"]), f"{s['steps_per_s']:.1f}",
         "yes" if s["kept"] else "no"]
        for s in r["stages"]
    ]  # fmt: skip
    kept = [s for s in r["stages"] if s["kept"]]
    return "\n".join([
        table(["stage", "change", "val loss (mean ± spread)", "per seed", "steps/s", "kept"], rows),
        "",
        f"{r['header']}. Chapter 04's recipe {r['stages'][0]['mean']:.3f} -> final recipe "
        f"{kept[-1]['mean']:.3f} (stages kept: {', '.join(s['stage'] for s in kept[1:]) or 'none'}).",
    ])  # fmt: skip


def ddp_section() -> str:
    ddp = load("ddp_scaling")
    if not ddp:
        return "Not run: `python benchmarks/ddp_scaling.py`."
    rows = [
        [r["setup"], r["steps"], f"{r['seconds']:.1f}", f"{r['tokens_per_s']:,.0f}",
         f"{r['val_loss']:.4f}", f"{r['load_average_before']} / {r['load_average_after']}"]
        for r in ddp
    ]  # fmt: skip
    header = ["setup", "steps", "train s", "tokens/s", "val loss", "load before / after"]
    return table(header, rows)


def widget_section() -> str:
    w = load("widget_redraw")
    if not w:
        return "Not run: `python benchmarks/widget_redraw.py`."
    rows = [
        [r["data"], r["widget"], r["control"], f"{r['wall_median_ms']:.0f}",
         f"{r['cpu_median_ms']:.0f}", "yes" if r["wall_median_ms"] < w["target_ms"] else "NO"]
        for r in w["rows"]
    ]  # fmt: skip
    header = ["attention set", "widget", "control", "wall median ms", "CPU median ms",
              f"< {w['target_ms']:.0f} ms"]  # fmt: skip
    return (
        f"{w['changes']} changes per control, {w['threads']} threads, load average "
        f"{w['load_average']}.\n\n" + table(header, rows)
    )


def chapters_section() -> str:
    r = load("chapters")
    if not r:
        return "Not run: `python benchmarks/chapter_times.py`."
    settings = [s for s in ("cores", "binder") if s in r]
    titles = {
        "cores": lambda x: f"{x['cpu_count']} cores, no limits",
        "binder": lambda x: "Binder limits (1-CPU quota, 2 GiB)",
    }
    names = sorted({n for s in settings for n in r[s]["chapters"]})
    header = ["chapter"]
    for s in settings:
        header += [f"{titles[s](r[s])}: s", "peak MiB"]
    rows = []
    for name in names:
        row = [name.removesuffix(".ipynb")]
        for s in settings:
            c = r[s]["chapters"].get(name)
            if c is None:
                row += ["", ""]
            elif c.get("error"):
                row += ["failed", ""]
            else:
                row += [f"{c['seconds']:.0f}", f"{c['peak_mib']:.0f}" if c["peak_mib"] else ""]
        rows.append(row)
    notes = [
        f"{titles[s](r[s])}: {r[s]['source']}, {r[s]['date']}"
        + (f", load average at the end {avg}." if (avg := r[s]["load_average_at_end"]) else ".")
        for s in settings
    ]
    return "\n".join([table(header, rows), ""] + [f"- {n}" for n in notes])


def other_section() -> str:
    parts = []
    vit = load("vit_digits")
    if vit:
        parts.append(
            f"- `python benchmarks/vit_digits.py`: ViT ({vit['parameters']:,} parameters) on "
            f"8x8 digits, {vit['steps']} steps in {vit['train_seconds']:.0f} s -> test accuracy "
            f"{vit['test_accuracy']:.4f} ({vit['threads']} thread(s), load "
            f"{vit['load_average_1min']:.1f})."
        )
    bert = load("pretrain_bert")
    if bert:
        for corpus, r in bert.items():
            parts.append(
                f"- `python benchmarks/pretrain_bert.py` ({corpus}): {r['model']}, {r['steps']} "
                f"steps in {r['train_seconds']:.0f} s -> MLM accuracy {r['mlm_accuracy']:.3f} "
                f"(unigram baseline {r['unigram_accuracy']:.3f}), NSP accuracy "
                f"{r['nsp_accuracy']:.3f} ({r['machine']})."
            )
    for name in ("distillation_seeds", "distillation_grammar"):
        d = load(name)
        if d:
            gain = d["summary"]["transfer set - labels alone"]
            st = d["settings"]
            parts.append(
                f"- `python benchmarks/distillation_seeds.py` ({st.get('data', 'sst2')}, "
                f"{st['n_labeled']} labels, {st.get('student', 'half-width')} student, "
                f"{len(d['seeds'])} seeds): the student distilled on the transfer set "
                f"{100 * gain['min']:+.1f} to {100 * gain['max']:+.1f} points over the same "
                f"student on labels alone ([results/{name}.json](results/{name}.json))."
            )
    if (RESULTS / "objectives_study.md").is_file():
        parts.append(
            "- `python benchmarks/objectives_study.py`: six pretraining objectives compared, "
            "three seeds: [results/objectives_study.md](results/objectives_study.md)."
        )
    return "\n".join(parts) or "Nothing else run yet."


NOTES = Path(HERE / "RESULTS_NOTES.md")


def main() -> None:
    notes = NOTES.read_text() if NOTES.is_file() else ""
    sections = {
        "Throughput: ptlearn vs HF transformers (CPU)": (
            "`python benchmarks/throughput.py`: same weights, same batch (8 x 64 tokens; ViT: 8 "
            "images), one process, runs alternating; median of the repeats.",
            throughput_section(),
        ),
        "Generation: KV cache vs none vs HF generate": (
            "`python benchmarks/kv_cache.py`",
            generation_section(),
        ),
        "Attention: written-out vs fused path": (
            "`python benchmarks/attention_scaling.py`: one attention call, B = 1, H = 8, "
            "d_head = 64, causal, forward only; peak memory above the inputs.",
            attention_section(),
        ),
        "Time to quality on a 2-core CPU": (
            "`python benchmarks/time_to_quality.py gpt` / `gpt --reference` / `vit`: each a "
            "fresh `ptlearn train` process.",
            time_to_quality_section(),
        ),
        "Training step vs nanoGPT (CPU)": (
            "`python benchmarks/nanogpt_step.py`: ptlearn's GPT and nanoGPT's vendored `model.py` "
            "at nanoGPT's CPU shape (4 layers, 4 heads, 128 wide, MLP 512, context 64, batch 12, "
            "exact GELU, AdamW with the same settings built by each project's own code, "
            "clipping), interleaved rounds in one process.",
            nanogpt_section(),
        ),
        "CPU speedrun (chapter 12)": (
            "`python benchmarks/speedrun.py`: chapter 04's GPT-2 recipe, then one change at a "
            "time on top of the best so far, each trained 90 s on Tiny Shakespeare per seed, in "
            "one process; a change is kept if its mean loss is >= 0.01 below the best so far.",
            speedrun_section(),
        ),
        "Chapters: wall time and peak memory": (
            "`python benchmarks/chapter_times.py` (and `--binder`): every notebook top to bottom "
            "in a fresh kernel, as the notebook tests run it. Peak memory: the kernel's own "
            "high-water mark without limits, the cgroup's under Binder's.",
            chapters_section(),
        ),
        "Multi-process training (DDP over gloo)": (
            "`python benchmarks/ddp_scaling.py`",
            ddp_section(),
        ),
        "Widget redraw (12 layers x 12 heads x 128 tokens)": (
            "`python benchmarks/widget_redraw.py`: one control change = observer, in-place "
            "artist update and the PNG the widget sends; driven headless like the tests.",
            widget_section(),
        ),
        "Other benchmarks": ("", other_section()),
    }
    out = [
        "# Benchmark results",
        "",
        "Regenerate everything with `bash benchmarks/run_all.sh` (about 95 minutes on an idle "
        "2-core machine); it ends by running `python benchmarks/report.py`, which writes this "
        "file from `benchmarks/results/*.json`.",
        "",
        machine_section(),
        "",
    ]
    for title, (how, body) in sections.items():
        out += [f"## {title}", ""] + ([how, ""] if how else []) + [body, ""]
    if notes:
        out += [notes.strip(), ""]
    (HERE / "RESULTS.md").write_text("\n".join(out))
    print(f"wrote {HERE / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
