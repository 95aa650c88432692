"""Pretrain a tiny BERT with MLM + NSP for a fixed time, and compare it with the unigram baseline.

    python benchmarks/pretrain_bert.py                      # 120 s on Tiny Shakespeare
    python benchmarks/pretrain_bert.py --time-budget 10     # a quick check
    python benchmarks/pretrain_bert.py --corpus grammar     # the generated review corpus
    python benchmarks/pretrain_bert.py --threads 1          # on a machine shared with other jobs

Data: Tiny Shakespeare (``$PTLEARN_DATA_DIR``; the first 90% trains, the last 10% evaluates).
A "document" is a run of 16 consecutive verse lines (speaker tags dropped) and a "sentence" is one
line. ``--corpus grammar`` uses :func:`ptlearn.data.make_grammar_documents` instead.
Tokenizer: WordPiece trained on the training text. Model: ``BertForPreTraining`` with the "tiny"
preset (2 layers, 128 wide, 2 heads). Every batch: :func:`ptlearn.objectives.nsp_pairs` over
random documents (50% true next line, 50% a line of another document), then fresh MLM masks from
:func:`ptlearn.objectives.mask_tokens` (15%; 80% [MASK], 10% random, 10% unchanged).

Evaluation uses fixed pairs and masks from held-out documents: masked-token accuracy against the
unigram baseline (always predict the most frequent training token, scored on the same masked
positions), and NSP accuracy against chance (50%). Results go to
``benchmarks/results/pretrain_bert.json``; a markdown table row is printed.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
from pathlib import Path

import torch

from ptlearn.models import BERT_PRESETS, BertConfig, BertForPreTraining
from ptlearn.objectives import mask_tokens, nsp_pairs
from ptlearn.tokenization import HFTokenizer
from ptlearn.training import TrainConfig, Trainer

RESULTS = Path(__file__).resolve().parent / "results" / "pretrain_bert.json"
LINES_PER_DOC, MAX_LEN = 16, 64


def shakespeare_documents() -> tuple[list[list[str]], list[list[str]]]:
    from ptlearn.data import load_tinyshakespeare, train_val_split

    train_text, val_text = train_val_split(load_tinyshakespeare())

    def documents(text: str) -> list[list[str]]:
        lines = [s for s in text.splitlines() if s.strip() and not s.rstrip().endswith(":")]
        return [lines[i : i + LINES_PER_DOC] for i in range(0, len(lines), LINES_PER_DOC)]

    return documents(train_text), documents(val_text)


def grammar_documents() -> tuple[list[list[str]], list[list[str]]]:
    from ptlearn.data import make_grammar_documents

    return make_grammar_documents(4000, seed=0), make_grammar_documents(400, seed=1)


def tokenize(docs: list[list[str]], tokenizer: HFTokenizer) -> list[list[list[int]]]:
    """Documents of sentences -> documents of id lists (no [CLS]/[SEP]: nsp_pairs adds them)."""
    return [[tokenizer.encode(s, add_special_tokens=False) for s in doc] for doc in docs]


def make_batch_fn(docs, tokenizer: HFTokenizer, batch_size: int):
    """``fn(generator) -> batch``: NSP pairs from random documents, then fresh MLM masks."""
    t = tokenizer

    def batch_fn(generator: torch.Generator) -> dict:
        picks = torch.randint(
            len(docs), (2 * batch_size // LINES_PER_DOC + 2,), generator=generator
        )
        pairs = nsp_pairs(
            [docs[i] for i in picks], t.cls_id, t.sep_id, t.pad_id, MAX_LEN, generator
        )
        keep = torch.randperm(len(pairs["input_ids"]), generator=generator)[:batch_size]
        batch = {k: v[keep] for k, v in pairs.items()}
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"], t.mask_id, t.vocab_size, t.special_ids, generator=generator
        )
        return batch

    return batch_fn


@torch.no_grad()
def evaluate(model, batch: dict, unigram_id: int, chunk: int = 256) -> dict:
    """Masked-token accuracy, unigram-baseline accuracy on the same masks, NSP accuracy."""
    model.eval()
    hits = nsp_hits = 0
    for i in range(0, len(batch["input_ids"]), chunk):
        part = {k: v[i : i + chunk] for k, v in batch.items()}
        out = model(**part)
        chosen = part["labels"] != -100
        hits += (out.logits.argmax(-1)[chosen] == part["labels"][chosen]).sum().item()
        nsp_hits += (out.pair_logits.argmax(-1) == part["next_sentence_label"]).sum().item()
    labels = batch["labels"][batch["labels"] != -100]
    return {
        "masked_tokens": len(labels),
        "mlm_accuracy": hits / len(labels),
        "unigram_accuracy": (labels == unigram_id).float().mean().item(),
        "nsp_accuracy": nsp_hits / len(batch["input_ids"]),
        "eval_pairs": len(batch["input_ids"]),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", type=float, default=120.0, help="training seconds")
    parser.add_argument("--max-steps", type=int, default=None, help="stop earlier at this step")
    parser.add_argument("--corpus", choices=("shakespeare", "grammar"), default="shakespeare")
    parser.add_argument("--vocab-size", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def pretrain(args: argparse.Namespace) -> dict:
    """Tokenizer, model, ``time_budget`` seconds of MLM + NSP, evaluation: the result record."""
    train_text, val_text = (
        shakespeare_documents() if args.corpus == "shakespeare" else grammar_documents()
    )
    sentences = (s for doc in train_text for s in doc)
    tokenizer = HFTokenizer.train_wordpiece(sentences, vocab_size=args.vocab_size)
    train_docs, val_docs = tokenize(train_text, tokenizer), tokenize(val_text, tokenizer)
    counts = collections.Counter(i for doc in train_docs for s in doc for i in s)
    unigram_id = counts.most_common(1)[0][0]  # the most frequent (non-special) training token

    torch.manual_seed(args.seed)
    config = BertConfig(**BERT_PRESETS["tiny"], vocab_size=tokenizer.vocab_size, max_len=MAX_LEN)
    model = BertForPreTraining(config)
    train_config = TrainConfig(
        lr=args.lr, weight_decay=0.01, betas=(0.9, 0.999), warmup_steps=args.warmup_steps,
        max_steps=args.max_steps, time_budget=args.time_budget, log_every=50, seed=args.seed,
        device="cpu",
    )  # fmt: skip
    trainer = Trainer(model, train_config, make_batch_fn(train_docs, tokenizer, args.batch_size))
    trainer.fit()

    eval_batch = make_batch_fn(val_docs, tokenizer, 2048)(torch.Generator().manual_seed(1234))
    metrics = evaluate(model, eval_batch, unigram_id)
    return {
        "time_budget_s": args.time_budget,
        "train_seconds": round(trainer.state.elapsed, 1),
        "steps": trainer.state.step,
        "batch_size": args.batch_size,
        "vocab_size": tokenizer.vocab_size,
        "model": "BertForPreTraining, preset tiny (2 layers, d_model 128, 2 heads)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "unigram_token": tokenizer.convert_ids_to_tokens([unigram_id])[0],
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}",
        "torch": torch.__version__,
    }


def main() -> dict:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = pretrain(args)
    # one record per corpus: a run on one corpus keeps the other's numbers
    records = json.loads(args.out.read_text()) if args.out.is_file() else {}
    records[args.corpus] = result
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=2) + "\n")
    print("| corpus | seconds | steps | MLM acc | unigram acc | NSP acc |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.corpus} | {result['train_seconds']} | {result['steps']} | "
        f"{result['mlm_accuracy']:.3f} | {result['unigram_accuracy']:.3f} | "
        f"{result['nsp_accuracy']:.3f} |"
    )
    return result


if __name__ == "__main__":
    main()
