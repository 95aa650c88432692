"""Exercise checkers of chapters 06 (ALBERT) and 07 (ViT): each passes ptlearn's reference and
names each typical mistake.

The buggy functions below are the mistakes learners make; every test asserts the exact verdict the
checker gives for one of them.
"""

import pytest
import torch

from ptlearn.exercises.ch06 import (
    FACTORIZED_MISTAKES,
    SOP_MISTAKES,
    check_factorized_param_count,
    check_sop_pairs,
    embedding_parameters,
    sop_reference,
)
from ptlearn.exercises.ch07 import (
    PATCH_MASK_MISTAKES,
    PATCHIFY_MISTAKES,
    check_patch_mask,
    check_patchify,
)
from ptlearn.exercises.framework import CheckResult
from ptlearn.models import AlbertConfig, AlbertModel, BertConfig, BertModel
from ptlearn.models.vit import patchify
from ptlearn.objectives import random_patch_mask


def fails_with(result: CheckResult, message: str) -> bool:
    return isinstance(result, CheckResult) and not result.passed and result.message == message


def not_implemented(*args):
    raise NotImplementedError


@pytest.mark.parametrize(
    "checker", [check_factorized_param_count, check_sop_pairs, check_patchify, check_patch_mask]
)
def test_not_implemented_is_a_verdict(checker, capsys):
    result = checker(not_implemented)
    assert not result and "not_implemented is not implemented yet" in result.message
    assert "NOT YET" in capsys.readouterr().out


# --- chapter 06: factorized embedding parameters ---------------------------------------------


def test_embedding_parameters_match_the_models():
    """The reference count equals the token embedding (+ projection) inside ptlearn's models."""
    bert = BertModel(BertConfig(vocab_size=100, d_model=32, n_heads=2, d_ff=64))
    albert = AlbertModel(AlbertConfig(vocab_size=100, d_embed=8, d_model=32, n_heads=2, d_ff=64))
    assert embedding_parameters(100, 32) == bert.embeddings.token.weight.numel() == 3200
    albert_count = albert.embeddings.token.weight.numel() + sum(
        p.numel() for p in albert.project.parameters()
    )
    assert embedding_parameters(100, 32, 8) == albert_count == 100 * 8 + 8 * 32 + 32


def factorized(V, H, E=None):
    return V * H if E is None else V * E + E * H + H


def test_factorized_reference_passes():
    result = check_factorized_param_count(factorized)
    assert result.passed and "3,939,072" in result.message and "23,040,000" in result.message


@pytest.mark.parametrize(
    "wrong, key",
    [
        (lambda V, H, E=None: V * H if E is None else V * E, "no_projection"),
        (lambda V, H, E=None: V * H if E is None else V * E + E * H, "no_bias"),
        (lambda V, H, E=None: V * H if E is None else V * E + E * H + E, "bias_size"),
        (lambda V, H, E=None: V * H, "unfactorized"),
    ],
)
def test_factorized_mistakes_are_named(wrong, key):
    assert fails_with(check_factorized_param_count(wrong), FACTORIZED_MISTAKES[key])


def test_factorized_bert_case_and_types():
    result = check_factorized_param_count(lambda V, H, E=None: factorized(V, H, E or 1) + 1)
    assert not result.passed and result.message.startswith("without d_embed (BERT)")
    result = check_factorized_param_count(lambda V, H, E=None: str(factorized(V, H, E)))
    assert fails_with(result, FACTORIZED_MISTAKES["not_a_number"].format(kind="str"))
    assert check_factorized_param_count(lambda V, H, E=None: torch.tensor(factorized(V, H, E)))


# --- chapter 06: sentence-order pairs -------------------------------------------------------


def sop_solution(document, swap):
    return [
        (document[i + 1], document[i], 1) if s else (document[i], document[i + 1], 0)
        for i, s in enumerate(swap)
    ]


def test_sop_reference_passes():
    assert check_sop_pairs(sop_solution).passed
    assert sop_reference([[1], [2], [3]], [False, True]) == [([1], [2], 0), ([3], [2], 1)]


def test_sop_accepts_tuples_and_tensors():
    def as_tensors(document, swap):
        return [
            (torch.tensor(a), tuple(b), torch.tensor(y)) for a, b, y in sop_solution(document, swap)
        ]

    assert check_sop_pairs(as_tensors).passed


@pytest.mark.parametrize(
    "wrong, key",
    [
        (lambda d, s: [(a, b, 1 - y) for a, b, y in sop_solution(d, s)], "inverted"),
        (lambda d, s: [(a, b, 0) for a, b, _ in sop_solution(d, s)], "constant_label"),
        (lambda d, s: [(d[i], d[i + 1], int(x)) for i, x in enumerate(s)], "never_swapped"),
    ],
)
def test_sop_label_mistakes_are_named(wrong, key):
    message = SOP_MISTAKES[key].format(label=0)
    assert fails_with(check_sop_pairs(wrong), message)


def test_sop_structure_mistakes_are_named():
    def skips_last(document, swap):
        return sop_solution(document, swap)[:-1]

    assert fails_with(
        check_sop_pairs(skips_last), SOP_MISTAKES["count"].format(n=5, pairs=4, got=3)
    )

    def every_other(document, swap):  # pairs segment i with i + 2 where it can
        out = sop_solution(document, swap)
        if len(document) > 2:
            out[0] = (document[2], document[0], 1)
        return out

    assert fails_with(check_sop_pairs(every_other), SOP_MISTAKES["not_consecutive"].format(i=0))

    def pops(document, swap):
        result = sop_solution([list(s) for s in document], swap)
        document.pop()
        return result

    assert fails_with(check_sop_pairs(pops), SOP_MISTAKES["changed_input"])
    assert fails_with(
        check_sop_pairs(lambda d, s: "pairs"), SOP_MISTAKES["not_a_list"].format(kind="str")
    )


# --- chapter 07: patchify ---------------------------------------------------------------------


def patchify_solution(images, patch_size):
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P)  # [B, C, h, P, w, P]
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, P, P, C]
    return x.reshape(B, (H // P) * (W // P), P * P * C)


def test_patchify_reference_passes():
    assert check_patchify(patchify_solution).passed
    assert check_patchify(patchify).passed


def test_patchify_matches_the_conv_patch_embedding():
    """The exercise's claim: Conv2d(kernel = stride = P) == Linear on the patchified image."""
    torch.manual_seed(0)
    images, P, C_out = torch.randn(2, 3, 8, 8), 4, 5
    conv = torch.nn.Conv2d(3, C_out, kernel_size=P, stride=P)
    weight = conv.weight.permute(0, 2, 3, 1).reshape(C_out, -1)  # [C_out, P*P*C]: channels last
    by_linear = patchify(images, P) @ weight.T + conv.bias  # [B, N, C_out]
    by_conv = conv(images).flatten(2).transpose(1, 2)  # [B, N, C_out]
    torch.testing.assert_close(by_linear, by_conv, atol=1e-5, rtol=1e-5)


def strips(images, P):
    B, C, H, W = images.shape
    return images.reshape(B, (H // P) * (W // P), P * P * C)


def column_major(images, P):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 4, 2, 3, 5, 1)
    return x.reshape(B, (H // P) * (W // P), -1)


def pixels_by_column(images, P):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 5, 3, 1)
    return x.reshape(B, (H // P) * (W // P), -1)


def channels_first(images, P):
    B, C, H, W = images.shape
    x = images.unfold(2, P, P).unfold(3, P, P)  # [B, C, h, w, P, P]
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, (H // P) * (W // P), -1)


def channel_axis(images, P):
    B, C, H, W = images.shape
    x = images.unfold(2, P, P).unfold(3, P, P)  # [B, C, h, w, P, P]
    return x.reshape(B, C, (H // P) * (W // P), P * P)


def not_flat(images, P):
    return patchify_solution(images, P).reshape(images.size(0), -1, P, P * images.size(1))


@pytest.mark.parametrize(
    "wrong, key",
    [
        (strips, "strips"),
        (column_major, "column_order"),
        (pixels_by_column, "pixels_transposed"),
        (channels_first, "channels_first"),
        (channel_axis, "channels_axis"),
        (not_flat, "not_flat"),
    ],
)
def test_patchify_mistakes_are_named(wrong, key):
    assert fails_with(check_patchify(wrong), PATCHIFY_MISTAKES[key])


def test_patchify_wrong_shape_names_both_shapes():
    result = check_patchify(lambda images, P: patchify_solution(images, P).transpose(1, 2))
    assert not result.passed and "[2, 4, 16]" in result.message and "[2, 16, 4]" in result.message


# --- chapter 07: the random patch mask -------------------------------------------------------


def mask_solution(batch, n_patches, mask_ratio):
    n_keep = int(n_patches * (1 - mask_ratio))
    keep_idx = torch.rand(batch, n_patches).argsort(dim=1)[:, :n_keep].sort(dim=1).values
    mask = torch.ones(batch, n_patches, dtype=torch.bool)
    mask.scatter_(1, keep_idx, False)
    return keep_idx, mask


def test_patch_mask_reference_passes():
    assert check_patch_mask(mask_solution).passed
    assert check_patch_mask(lambda B, N, r: random_patch_mask(B, N, r)).passed


def with_keep(n_keep_of):
    """A mask function that keeps n_keep_of(N, ratio) random patches per image."""

    def fn(batch, n_patches, mask_ratio):
        n_keep = n_keep_of(n_patches, mask_ratio)
        keep_idx = torch.rand(batch, n_patches).argsort(dim=1)[:, :n_keep].sort(dim=1).values
        mask = torch.ones(batch, n_patches, dtype=torch.bool)
        mask.scatter_(1, keep_idx, False)
        return keep_idx, mask

    return fn


def test_patch_mask_counts():
    result = check_patch_mask(with_keep(lambda N, r: int(N * r)))
    assert fails_with(result, PATCH_MASK_MISTAKES["ratio_inverted"])
    result = check_patch_mask(with_keep(lambda N, r: round(N * (1 - r) + 0.5)))
    assert fails_with(
        result, PATCH_MASK_MISTAKES["rounding"].format(N=10, ratio=0.75, n_keep=2, got=3)
    )


def test_patch_mask_mistakes_are_named():
    def inverted(B, N, r):
        keep_idx, mask = mask_solution(B, N, r)
        return keep_idx, ~mask

    def with_replacement(B, N, r):
        keep_idx = torch.randint(N, (B, int(N * (1 - r)))).sort(dim=1).values
        mask = torch.ones(B, N, dtype=torch.bool)
        mask.scatter_(1, keep_idx, False)
        return keep_idx, mask

    def unsorted(B, N, r):
        keep_idx, mask = mask_solution(B, N, r)
        return keep_idx.flip(1), mask

    def same_for_all(B, N, r):
        keep_idx, mask = mask_solution(1, N, r)
        return keep_idx.expand(B, -1), mask.expand(B, -1)

    def first_patches(B, N, r):
        n_keep = int(N * (1 - r))
        keep_idx = torch.arange(n_keep).expand(B, -1)
        mask = torch.ones(B, N, dtype=torch.bool)
        mask[:, :n_keep] = False
        mask[0] = mask[0].roll(1)  # not all rows equal, yet far from uniform
        keep_idx = (~mask).nonzero()[:, 1].reshape(B, n_keep)
        return keep_idx, mask

    def float_mask(B, N, r):
        keep_idx, mask = mask_solution(B, N, r)
        return keep_idx, mask.float()

    assert fails_with(check_patch_mask(inverted), PATCH_MASK_MISTAKES["mask_inverted"])
    assert check_patch_mask(with_replacement).message.startswith("keep_idx repeats a patch")
    assert fails_with(check_patch_mask(unsorted), PATCH_MASK_MISTAKES["unsorted"])
    assert fails_with(check_patch_mask(same_for_all), PATCH_MASK_MISTAKES["same_mask"])
    assert check_patch_mask(first_patches).message.startswith("the masks are not uniform")
    assert fails_with(
        check_patch_mask(float_mask), PATCH_MASK_MISTAKES["mask_dtype"].format(dtype=torch.float32)
    )
    assert fails_with(
        check_patch_mask(lambda B, N, r: torch.zeros(B, N)), PATCH_MASK_MISTAKES["pair"]
    )
