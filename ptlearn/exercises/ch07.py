"""Exercise checkers for chapter 07: ViT (patches as tokens; MAE's random patch mask)."""

from __future__ import annotations

import torch

from .framework import Mistake, Tensor, call, close, diagnose, exercise, expect_tensor

PATCHIFY_MISTAKES = {
    "shape": "the result has shape {got}, expected {ref} = [B, N, P*P*C] with N = (H/P) * (W/P) "
    "patches. {hint}",
    "channels_axis": "the channels are still a separate axis: each patch must be ONE vector of "
    "P*P*C numbers (its pixels row by row, channels last).",
    "not_flat": "each patch is still a P x P grid: flatten it into one vector of P*P*C numbers.",
    "strips": "your 'patches' are runs of consecutive pixels (strips of whole rows), not P x P "
    "squares: a plain reshape cannot cut squares. Reshape to [B, C, H/P, P, W/P, P] and permute "
    "before flattening.",
    "column_order": "the patches are in column-major order. ViT numbers patches row by row "
    "(raster order): patch 1 is to the right of patch 0, not below it.",
    "pixels_transposed": "the patches are right but inside each patch the pixels are listed "
    "column by column; list them row by row.",
    "channels_first": "inside each patch the values are ordered channel first (C, P, P); "
    "ptlearn's patchify, like MAE, lists them row, column, then channel (channels last).",
}
# (B, C, H, P): grey 8x8 digits with 2x2 patches, RGB with 3x3 patches, one patch per image
PATCHIFY_CASES = [(2, 1, 8, 2), (3, 3, 6, 3), (2, 3, 8, 4), (1, 1, 4, 4)]


def patchify_variants(images: Tensor, P: int) -> dict[str, Tensor]:
    """What the usual patchify mistakes return, for :func:`check_patchify`."""
    B, C, H, W = images.shape
    h, w, m = H // P, W // P, PATCHIFY_MISTAKES
    grid = images.reshape(B, C, h, P, w, P)  # [B, C, h, P, w, P]
    return {
        m["strips"]: images.reshape(B, h * w, P * P * C),
        m["column_order"]: grid.permute(0, 4, 2, 3, 5, 1).reshape(B, h * w, -1),
        m["pixels_transposed"]: grid.permute(0, 2, 4, 5, 3, 1).reshape(B, h * w, -1),
        m["channels_first"]: grid.permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, -1),
    }


@exercise("patchify")
def check_patchify(fn) -> str:
    """Check ``fn(images, patch_size) -> patches``: ``[B, C, H, W]`` -> ``[B, N, P*P*C]``, the
    patches in raster order (row by row), each patch's pixels row by row with the channels last,
    as :func:`ptlearn.models.vit.patchify`. Recognises wrong shapes, strips instead of squares,
    column-major patch order, transposed pixels and channel-first patches."""
    from ..models.vit import patchify

    m, g = PATCHIFY_MISTAKES, torch.Generator().manual_seed(0)
    for B, C, H, P in PATCHIFY_CASES:
        images = torch.randn(B, C, H, H, generator=g)
        got = expect_tensor(
            call(fn, images.clone(), P, inputs=f"images {list(images.shape)}, patch_size={P}"),
            "the result",
        )
        ref = patchify(images, P)  # [B, N, P*P*C]
        N = ref.size(1)
        if tuple(got.shape) in {(B, C, N, P * P), (B, N, C, P * P)}:
            raise Mistake(m["channels_axis"])
        if tuple(got.shape) in {(B, N, P, P * C), (B, N, P, P, C), (B, N, C, P, P)}:
            raise Mistake(m["not_flat"])
        hint = f"(images {list(images.shape)}, patch_size={P})"
        if got.shape != ref.shape:
            raise Mistake(m["shape"].format(got=list(got.shape), ref=list(ref.shape), hint=hint))
        if close(got, ref):
            continue
        raise Mistake(
            diagnose(got, patchify_variants(images, P))
            or f"the shape is right but the values differ from ptlearn's patchify {hint}."
        )
    return "the right patches in raster order, pixels row by row, channels last (4 shapes)."


PATCH_MASK_MISTAKES = {
    "pair": "return (keep_idx, mask): keep_idx [B, n_keep] (the visible patches) and mask [B, N] "
    "(bool, True = hidden).",
    "keep_shape": "keep_idx has shape {got}, expected {ref}: n_keep = int(N * (1 - mask_ratio)) "
    "= {n_keep} visible patches per image.",
    "ratio_inverted": "you kept int(N * mask_ratio) patches; mask_ratio is the fraction HIDDEN, "
    "so keep n_keep = int(N * (1 - mask_ratio)).",
    "rounding": "for N={N} and mask_ratio={ratio} keep int(N * (1 - mask_ratio)) = {n_keep} "
    "patches (round down, as ptlearn and MAE do); you kept {got}.",
    "mask_shape": "mask has shape {got}, expected [B, N] = {ref}.",
    "mask_dtype": "mask should be a bool tensor (True = hidden), not {dtype}.",
    "mask_inverted": "the mask is inverted: True must mean HIDDEN (the patches the encoder does "
    "not see), so each row has N - n_keep True values.",
    "mask_count": "each mask row should hide N - n_keep = {hidden} patches; row {row} hides {got}.",
    "range": "keep_idx holds indices outside [0, N).",
    "duplicates": "keep_idx repeats a patch in row {row}: draw WITHOUT replacement, e.g. the "
    "first n_keep entries of a random permutation (torch.rand(B, N).argsort(dim=1)).",
    "unsorted": "keep_idx is not sorted: sort each row (.sort(dim=1).values) so the visible "
    "patches stay in raster order; ViTMAE's decoder puts them back in that order.",
    "inconsistent": "keep_idx and mask disagree: a kept patch is marked hidden in row {row}.",
    "same_mask": "every image got the same mask: draw a separate random permutation per image.",
    "not_random": "the masks are not uniform: patch {patch} is kept in {freq:.0%} of the draws, "
    "expected about {expected:.0%}. Every patch must be equally likely to be kept.",
}


def check_one_mask(result, B: int, N: int, ratio: float) -> tuple[Tensor, Tensor]:
    """The structural checks of :func:`check_patch_mask` on one call's result."""
    m, n_keep = PATCH_MASK_MISTAKES, int(N * (1 - ratio))
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise Mistake(m["pair"])
    keep_idx = expect_tensor(result[0], "keep_idx")
    mask = expect_tensor(result[1], "mask")
    if keep_idx.dim() == 2 and keep_idx.size(0) == B and keep_idx.size(1) != n_keep:
        if keep_idx.size(1) == int(N * ratio) and int(N * ratio) != n_keep:
            raise Mistake(m["ratio_inverted"])
        if abs(keep_idx.size(1) - N * (1 - ratio)) < 1:
            raise Mistake(
                m["rounding"].format(N=N, ratio=ratio, n_keep=n_keep, got=keep_idx.size(1))
            )
    if tuple(keep_idx.shape) != (B, n_keep):
        raise Mistake(
            m["keep_shape"].format(got=list(keep_idx.shape), ref=[B, n_keep], n_keep=n_keep)
        )
    if tuple(mask.shape) != (B, N):
        raise Mistake(m["mask_shape"].format(got=list(mask.shape), ref=[B, N]))
    if mask.dtype != torch.bool:
        raise Mistake(m["mask_dtype"].format(dtype=mask.dtype))
    if keep_idx.dtype.is_floating_point or keep_idx.min() < 0 or keep_idx.max() >= N:
        raise Mistake(m["range"])
    for row in range(B):
        if len(set(keep_idx[row].tolist())) != n_keep:
            raise Mistake(m["duplicates"].format(row=row))
    hidden = mask.sum(dim=1)  # [B]
    if n_keep != N - n_keep and bool((hidden == n_keep).all()):
        raise Mistake(m["mask_inverted"])
    if not bool((hidden == N - n_keep).all()):
        row = int((hidden != N - n_keep).nonzero()[0])
        raise Mistake(m["mask_count"].format(hidden=N - n_keep, row=row, got=int(hidden[row])))
    if not bool((keep_idx.diff(dim=1) > 0).all()):
        raise Mistake(m["unsorted"])
    if mask.gather(1, keep_idx).any():
        row = int(mask.gather(1, keep_idx).any(dim=1).nonzero()[0])
        raise Mistake(m["inconsistent"].format(row=row))
    return keep_idx, mask


@exercise("random patch mask")
def check_patch_mask(fn) -> str:
    """Check ``fn(batch, n_patches, mask_ratio) -> (keep_idx, mask)`` against MAE's rule
    (:func:`ptlearn.objectives.random_patch_mask`): per image, keep ``int(N * (1 - mask_ratio))``
    patches chosen uniformly without replacement; ``keep_idx [B, n_keep]`` sorted, ``mask [B, N]``
    bool with True = hidden. Recognises wrong counts (inverted ratio, rounding), an inverted mask,
    duplicates, unsorted or inconsistent indices, one mask for the whole batch and a mask that is
    not uniformly random."""
    m = PATCH_MASK_MISTAKES
    torch.manual_seed(0)  # the learner's function draws from torch's global generator
    for B, N, ratio in ((4, 16, 0.75), (3, 10, 0.75), (2, 49, 0.6), (5, 4, 0.5)):
        result = call(fn, B, N, ratio, inputs=f"batch={B}, n_patches={N}, mask_ratio={ratio}")
        check_one_mask(result, B, N, ratio)
    B, N, ratio = 2000, 16, 0.75
    keep_idx, mask = check_one_mask(
        call(fn, B, N, ratio, inputs=f"batch={B}, n_patches={N}, mask_ratio={ratio}"), B, N, ratio
    )
    if bool((mask == mask[:1]).all()):
        raise Mistake(m["same_mask"])
    freq = (~mask).float().mean(dim=0)  # [N]  how often each patch is kept
    expected = 1 - ratio
    worst = int((freq - expected).abs().argmax())
    if abs(float(freq[worst]) - expected) > 0.06:  # 6 standard deviations at B=2000
        raise Mistake(
            m["not_random"].format(patch=worst, freq=float(freq[worst]), expected=expected)
        )
    return "the right number of patches, kept uniformly at random per image, sorted and consistent."
