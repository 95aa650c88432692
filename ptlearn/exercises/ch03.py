"""Exercise checkers for chapter 03: tokenizers (the two steps of byte-pair encoding, Sennrich et al. 2016)."""

from __future__ import annotations

from ..tokenization import merge_pair, pair_counts
from .framework import Mistake, call, exercise

__all__ = ["check_bpe_merge", "check_pair_counts", "merge_pair", "pair_counts"]


BPE_MISTAKES = {
    "last_pair": "the last pair {pair} is missing: zip(ids, ids[1:]) visits every adjacent pair.",
    "changed_input": "your function changed the input list; build and return a new list.",
    "last_token": "the last token was dropped: ids={ids} gave {got}, expected {ref}.",
    "no_skip": "after a match you still look at the second token of the pair, so it appears "
    "again in the output: {ids} with pair {pair} should become {ref}, you returned {got}. Skip both "
    "tokens of a matched pair (i += 2).",
    "overlap": "overlapping matches: {ids} with pair {pair} should become {ref}. After a match, "
    "skip both tokens of the pair (i += 2).",
}
# (ids, pair to merge): repeats at both ends, overlapping pairs, a single token, an empty list
BPE_CASES = [
    ([1, 2, 3, 1, 2, 1, 2], (1, 2)),
    ([5, 5, 5, 5, 5], (5, 5)),
    ([7, 1, 2], (1, 2)),
    ([4], (4, 4)),
    ([], (1, 2)),
]


@exercise("BPE pair counts")
def check_pair_counts(fn) -> str:
    """Check ``fn(ids: list[int]) -> dict[(a, b), count]``, the counting step of BPE training.
    Recognises a dropped last pair and crashes on short lists."""
    for ids in [ids for ids, _ in BPE_CASES] + [[3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]]:
        got = call(fn, list(ids), inputs=f"ids={ids}")
        if not isinstance(got, dict):
            raise Mistake(
                f"return a dict (or Counter) from pairs to counts, not a {type(got).__name__}."
            )
        got, ref = {pair: n for pair, n in got.items() if n}, dict(pair_counts(ids))
        if got == ref:
            continue
        if len(ids) > 1 and got == dict(pair_counts(ids[:-1])):
            raise Mistake(BPE_MISTAKES["last_pair"].format(pair=tuple(ids[-2:])))
        raise Mistake(f"for ids={ids} you counted {got}, expected {ref}.")
    return "adjacent pairs are counted correctly, including repeats and the last pair."


@exercise("BPE merge")
def check_bpe_merge(fn) -> str:
    """Check ``fn(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]``, one BPE
    merge: every occurrence of ``pair``, scanned left to right without overlaps, becomes ``new_id``.
    Recognises overlapping matches, a dropped last token and an input list changed in place."""
    m, new = BPE_MISTAKES, 99
    for ids, pair in BPE_CASES:
        given = list(ids)
        got = call(fn, given, pair, new, inputs=f"ids={ids}, pair={pair}, new_id={new}")
        if given != ids:
            raise Mistake(m["changed_input"])
        if not isinstance(got, list):
            raise Mistake(f"return a list of ids, not a {type(got).__name__}.")
        ref = merge_pair(ids, pair, new)
        if got == ref:
            continue
        if ids and got in (ref[:-1], merge_pair(ids[:-1], pair, new)):
            raise Mistake(m["last_token"].format(ids=ids, got=got, ref=ref))
        if got == [new if (a, b) == pair else a for a, b in zip(ids, ids[1:] + [None])]:
            raise Mistake(m["no_skip"].format(ids=ids, pair=pair, ref=ref, got=got))
        if pair == (5, 5):
            raise Mistake(m["overlap"].format(ids=ids, pair=pair, ref=ref))
        raise Mistake(f"merging {pair} in {ids} gave {got}, expected {ref}.")
    return "every pair is merged left to right without overlaps, and the last token is kept."
