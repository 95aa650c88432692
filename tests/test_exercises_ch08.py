"""Chapter 08 checkers: ELECTRA's replaced-token labels, T5's span corruption, GPT-1's last token.

Each buggy function is a mistake learners make; each test asserts the checker's exact verdict.
"""

import torch

from ptlearn.exercises.ch08 import (
    LAST_TOKEN_MISTAKES,
    RTD_MISTAKES,
    SPAN_MISTAKES,
    check_last_token_pool,
    check_rtd_labels,
    check_span_corruption,
    sentinel_spans,
)
from ptlearn.exercises.framework import CheckResult
from ptlearn.finetune import pool
from ptlearn.pretraining import replace_and_label, spans_to_sentinels


def fails_with(result: CheckResult, message: str) -> bool:
    return isinstance(result, CheckResult) and not result.passed and result.message == message


# --- replaced-token detection labels -----------------------------------------------------------


def test_rtd_independent_solution_passes():
    def per_position(original_ids, chosen, sampled_ids, attention_mask):  # one token at a time
        corrupted, labels = original_ids.clone(), torch.zeros_like(original_ids)
        for b, t in zip(*torch.nonzero(chosen, as_tuple=True)):
            corrupted[b, t] = sampled_ids[b, t]
            labels[b, t] = int(sampled_ids[b, t] != original_ids[b, t])
        labels[attention_mask == 0] = -100
        return corrupted, labels

    assert check_rtd_labels(per_position).passed


def test_rtd_not_implemented_and_crash_are_verdicts():
    def stub(original_ids, chosen, sampled_ids, attention_mask):
        raise NotImplementedError

    def crash(original_ids, chosen, sampled_ids, attention_mask):
        return original_ids @ chosen  # matmul of [B, T] by [B, T]

    assert "not implemented yet" in check_rtd_labels(stub).message
    assert "your function raised RuntimeError" in check_rtd_labels(crash).message


def test_rtd_labels_taken_from_chosen():
    def buggy(original_ids, chosen, sampled_ids, attention_mask):
        corrupted = torch.where(chosen, sampled_ids, original_ids)
        return corrupted, chosen.long().masked_fill(attention_mask == 0, -100)

    assert fails_with(check_rtd_labels(buggy), RTD_MISTAKES["labels_from_chosen"])


def test_rtd_labels_from_samples_everywhere():
    def buggy(original_ids, chosen, sampled_ids, attention_mask):
        corrupted = torch.where(chosen, sampled_ids, original_ids)
        labels = (sampled_ids != original_ids).long()
        return corrupted, labels.masked_fill(attention_mask == 0, -100)

    assert fails_with(check_rtd_labels(buggy), RTD_MISTAKES["labels_from_samples"])


def test_rtd_inverted_labels():
    def buggy(original_ids, chosen, sampled_ids, attention_mask):
        corrupted, labels = replace_and_label(original_ids, chosen, sampled_ids, attention_mask)
        return corrupted, torch.where(labels == -100, labels, 1 - labels)

    assert fails_with(check_rtd_labels(buggy), RTD_MISTAKES["inverted"])


def test_rtd_padding_not_ignored():
    def buggy(original_ids, chosen, sampled_ids, attention_mask):
        corrupted = torch.where(chosen, sampled_ids, original_ids)
        return corrupted, (corrupted != original_ids).float()  # float labels are accepted

    assert fails_with(check_rtd_labels(buggy), RTD_MISTAKES["padding"].format(value=[0]))


def test_rtd_wrong_corruption():
    def everywhere(original_ids, chosen, sampled_ids, attention_mask):
        return replace_and_label(original_ids, torch.ones_like(chosen), sampled_ids, attention_mask)

    def nowhere(original_ids, chosen, sampled_ids, attention_mask):
        return replace_and_label(original_ids, chosen, original_ids, attention_mask)

    assert fails_with(check_rtd_labels(everywhere), RTD_MISTAKES["replaced_everywhere"])
    assert fails_with(check_rtd_labels(nowhere), RTD_MISTAKES["not_replaced"])


def test_rtd_wrong_return_type():
    result = check_rtd_labels(lambda o, c, s, a: o)
    assert not result.passed and "return a pair (corrupted_ids, labels)" in result.message


# --- span corruption ---------------------------------------------------------------------------


def test_span_independent_solution_passes():
    def by_runs(ids, noise_mask, sentinel_ids):  # group the tokens into runs first
        inputs, targets, sentinels = [], [], iter(sentinel_ids)
        run_start = 0
        while run_start < len(ids):
            run_end = run_start
            while run_end < len(ids) and noise_mask[run_end] == noise_mask[run_start]:
                run_end += 1
            run = list(ids[run_start:run_end])
            if noise_mask[run_start]:
                s = next(sentinels)
                inputs.append(s)
                targets += [s] + run
            else:
                inputs += run
            run_start = run_end
        targets.append(next(sentinels))
        return inputs, targets

    assert check_span_corruption(by_runs).passed


def test_span_mistakes_are_named():
    cases = {
        "per_token": dict(per_token=True),
        "same_sentinel": dict(same=True),
        "no_final": dict(final=False),
        "no_target_sentinels": dict(tagged=False),
    }
    for mistake, kwargs in cases.items():

        def buggy(ids, noise_mask, sentinel_ids, kwargs=kwargs):
            return sentinel_spans(ids, noise_mask, sentinel_ids, **kwargs)

        assert fails_with(check_span_corruption(buggy), SPAN_MISTAKES[mistake]), mistake


def test_span_dropped_tokens_left_in_input():
    def buggy(ids, noise_mask, sentinel_ids):
        _, targets = spans_to_sentinels(ids, noise_mask, sentinel_ids)
        inputs, k = [], 0
        for i, (token, noisy) in enumerate(zip(ids, noise_mask)):
            if noisy and (i == 0 or not noise_mask[i - 1]):
                inputs.append(sentinel_ids[k])
                k += 1
            inputs.append(token)  # the dropped token stays
        return inputs, targets

    assert fails_with(check_span_corruption(buggy), SPAN_MISTAKES["kept_in_input"])


def test_span_other_mistakes_show_both_answers():
    def buggy(ids, noise_mask, sentinel_ids):
        inputs, targets = spans_to_sentinels(ids, noise_mask, sentinel_ids)
        return inputs, targets[::-1]

    result = check_span_corruption(buggy)
    assert not result.passed and "expected" in result.message and "you returned" in result.message


# --- GPT-1's last-token head -------------------------------------------------------------------


def test_last_token_pool_solutions_pass():
    def gather(hidden, attention_mask):  # ptlearn's own pooling
        return pool(hidden, attention_mask, "last")

    def loop(hidden, attention_mask):  # an independent solution, one row at a time
        return torch.stack([h[int(m.sum()) - 1] for h, m in zip(hidden, attention_mask)])

    assert check_last_token_pool(gather).passed
    assert check_last_token_pool(loop).passed


def test_last_token_pool_position_minus_one():
    def buggy(hidden, attention_mask):
        return hidden[:, -1]

    assert fails_with(check_last_token_pool(buggy), LAST_TOKEN_MISTAKES["position_minus_one"])


def test_last_token_pool_first_token():
    def buggy(hidden, attention_mask):
        return hidden[:, 0]

    assert fails_with(check_last_token_pool(buggy), LAST_TOKEN_MISTAKES["first_token"])


def test_last_token_pool_one_past_and_mean():
    def one_past(hidden, attention_mask):
        index = attention_mask.sum(1).clamp(max=hidden.shape[1] - 1)
        return hidden[torch.arange(hidden.shape[0]), index]

    def mean(hidden, attention_mask):
        return pool(hidden, attention_mask, "mean")

    def unclamped(hidden, attention_mask):  # index T for the unpadded row
        return hidden[torch.arange(hidden.shape[0]), attention_mask.sum(1)]

    assert fails_with(check_last_token_pool(one_past), LAST_TOKEN_MISTAKES["one_past"])
    assert fails_with(check_last_token_pool(mean), LAST_TOKEN_MISTAKES["mean"])
    assert "your function raised IndexError" in check_last_token_pool(unclamped).message


def test_last_token_pool_wrong_shape():
    def buggy(hidden, attention_mask):
        return hidden[:, -1:]  # [B, 1, C]

    result = check_last_token_pool(buggy)
    assert not result.passed and "[B, C]" in result.message


def test_the_notebooks_last_token_solution_passes():
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "notebooks" / "08_objectives.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = next(
        "".join(c["source"]) for c in cells if "def last_token_solution(" in "".join(c["source"])
    )
    code = re.search(r"```python\n(.*?)```", text.split("<summary>Solution</summary>")[1], re.S)
    namespace = {"torch": torch}
    exec(code.group(1), namespace)
    assert check_last_token_pool(namespace["last_token_solution"]).passed
