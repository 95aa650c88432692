"""A small synthetic attention set whose heads are easy to tell apart, for the browser test.

2 layers x 2 heads over 6 tokens; each head sends most of every query's weight (0.75) to one key
chosen by a simple rule, and spreads the rest evenly, so the brightest cell of each row says which
head is on screen:

- layer 0, head 0: the token itself (the diagonal);
- layer 0, head 1: the previous token;
- layer 1, head 0: the first token, [CLS];
- layer 1, head 1: the next token.
"""

from __future__ import annotations

import torch

TOKENS = ["[CLS]", "the", "cat", "sat", "down", "[SEP]"]
RULES = {(0, 0): "self", (0, 1): "previous", (1, 0): "first", (1, 1): "next"}
PEAK = 0.75


def target(rule: str, query: int, n: int) -> int:
    """The key that ``query`` looks at most under ``rule``."""
    return {"self": query, "previous": (query - 1) % n, "first": 0, "next": (query + 1) % n}[rule]


def demo_attentions() -> tuple[torch.Tensor, ...]:
    """The per-layer tuple of ``[1, H, T, T]`` attention maps, as a model returns it."""
    n = len(TOKENS)
    layers = []
    for layer in range(2):
        maps = torch.full((1, 2, n, n), (1 - PEAK) / (n - 1))  # [B, H, Tq, Tk]
        for head in range(2):
            for query in range(n):
                maps[0, head, query, target(RULES[layer, head], query, n)] = PEAK
        layers.append(maps)
    return tuple(layers)
