"""Exercise checkers for chapter 07: ViT (patches as tokens; MAE's random patch mask).

Why this module is longer than 350 lines: chapter 07 has five checkers (patchify, the patch
mask, the patch embedding, the classifier, MAE's unshuffle), each with its catalogue of wrong
variants (strips, column order, [CLS] at the end, positions after dropping, ...); one chapter's
feedback stays in one file.
"""

from __future__ import annotations

import torch

from .framework import (
    Mistake,
    Tensor,
    build,
    call,
    close,
    compare_gradients,
    copy_weights,
    diagnose,
    exercise,
    expect_shape,
    expect_tensor,
    first_output,
)

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


# --- build it: the ViT patch embedding, the classifier, MAE's unshuffle ----------------------------

PATCH_EMBEDDING_MISTAKES = {
    "no_cls": "the output has {got} tokens, expected 1 + N = {ref}: the [CLS] token is missing. "
    "Prepend self.cls_token (expanded to the batch) with torch.cat along the token axis.",
    "keep_ignored": "with keep_idx the output should hold [CLS] + the {n_keep} kept patches "
    "([B, {ref}, C]), got {got} tokens: keep only the patches listed in keep_idx (gather).",
    "cls_last": "the [CLS] token is at the end: it must be token 0, in FRONT of the patches "
    "(the classifier reads token 0).",
    "no_positions": "no position embedding is added: add self.position (row 0 to [CLS], rows "
    "1..N to the patches). Without it the encoder sees an unordered set of patches.",
    "cls_no_position": "the patches get their positions but [CLS] does not: add "
    "self.position[:, :1] to the [CLS] token too (it is row 0 of E_pos).",
    "positions_shifted": "the patches got position rows 0..N-1; row 0 belongs to [CLS], so patch "
    "i gets self.position[:, 1 + i].",
    "strips": "the patches are strips of consecutive pixels, not P x P squares: patchify with "
    "reshape + permute (exercise 1), not a plain reshape.",
    "column_order": "the patches are in column-major order: number them row by row (raster "
    "order), as the position embeddings expect.",
    "pixels_transposed": "inside each patch the pixels are listed column by column: list them row "
    "by row (ptlearn's patchify order), so that the copied projection weights line up.",
    "positions_after_keep": "with keep_idx you added positions 1..N_keep to the kept patches: "
    "add each patch's OWN position before dropping patches (MAE's encoder must know where each "
    "visible patch was).",
    "no_proj": "the patches are not projected: apply self.proj (the shared linear map E) to "
    "every patch.",
}

# (image_size, patch_size, n_channels, d_model): grey 8x8 with 2x2 patches, RGB 6x6 with 3x3,
# grey 28x28 with 7x7 (the chapter's MNIST model)
PATCH_EMBEDDING_CASES = [(8, 2, 1, 16), (6, 3, 3, 12), (28, 7, 1, 32)]


def embedding_state(reference, learner) -> dict:
    """ptlearn's patch-embedding weights for the learner's module: the conv's weight
    ``[C, C_in, P, P]`` as a Linear weight ``[C, P*P*C_in]`` in patchify's pixel order (row,
    column, channel), or as is where the learner also used a ``Conv2d``."""
    state = {k: v.detach().clone() for k, v in reference.state_dict().items()}
    proj = getattr(learner, "proj", None)
    if not isinstance(proj, torch.nn.Conv2d):
        w = state["proj.weight"]
        state["proj.weight"] = w.permute(0, 2, 3, 1).reshape(w.size(0), -1)
    return state


def patch_embedding_variants(reference, images: Tensor, keep_idx: Tensor | None) -> dict:
    """What the usual patch-embedding mistakes return, from ptlearn's weights."""
    from ..objectives import patchify

    m = PATCH_EMBEDDING_MISTAKES
    P = reference.proj.kernel_size[0]
    w = reference.proj.weight
    E = w.permute(0, 2, 3, 1).reshape(w.size(0), -1)  # [C, P*P*C_in]
    b = reference.proj.bias
    pos, cls = reference.position, reference.cls_token  # [1, 1+N, C], [1, 1, C]
    B = images.size(0)

    def assemble(patch_vecs, patch_pos, cls_vec, cls_first=True):
        x = patch_vecs + patch_pos  # [B, N, C]
        if keep_idx is not None:
            x = x.gather(1, keep_idx[..., None].expand(-1, -1, x.size(-1)))
        c = cls_vec.expand(B, -1, -1)
        return torch.cat([c, x], 1) if cls_first else torch.cat([x, c], 1)

    proj = patchify(images, P) @ E.T + b  # [B, N, C]
    variants = {
        m["cls_last"]: assemble(proj, pos[:, 1:], cls + pos[:, :1], cls_first=False),
        m["no_positions"]: assemble(proj, 0, cls),
        m["cls_no_position"]: assemble(proj, pos[:, 1:], cls),
        m["positions_shifted"]: assemble(proj, pos[:, :-1], cls + pos[:, :1]),
    }
    for message, patches in patchify_variants(images, P).items():
        key = {
            PATCHIFY_MISTAKES["strips"]: "strips",
            PATCHIFY_MISTAKES["column_order"]: "column_order",
            PATCHIFY_MISTAKES["pixels_transposed"]: "pixels_transposed",
        }.get(message)
        if key:
            variants[m[key]] = assemble(patches @ E.T + b, pos[:, 1:], cls + pos[:, :1])
    if keep_idx is not None:
        kept = proj.gather(1, keep_idx[..., None].expand(-1, -1, proj.size(-1)))
        after = kept + pos[:, 1 : 1 + keep_idx.size(1)]
        variants[m["positions_after_keep"]] = torch.cat(
            [(cls + pos[:, :1]).expand(B, -1, -1), after], 1
        )
    return variants


@exercise("ViT patch embedding")
def check_patch_embedding(cls) -> str:
    """Check a module class ``cls(config)`` (a :class:`ptlearn.models.ViTConfig`) whose
    ``forward(pixel_values, keep_idx=None)`` maps ``[B, C_in, H, W]`` to ``[B, 1 + N, C]``
    against :class:`ptlearn.models.vit.PatchEmbeddings` with the same weights (copied in).

    The learner's module has ptlearn's parameter names: ``proj`` (``nn.Linear(P*P*C_in, C)``, or
    a ``Conv2d`` with kernel = stride = P), ``cls_token [1, 1, C]`` and ``position
    [1, 1 + N, C]``. With ``keep_idx [B, N_keep]`` (MAE) only [CLS] and the kept patches come
    out, each patch with its own position. Three shapes; outputs and gradients. Names the
    mistakes in ``PATCH_EMBEDDING_MISTAKES``: [CLS] missing or last, positions missing, shifted
    or added after dropping patches, [CLS] without its position, strips, column-major patches,
    transposed pixels."""
    from ..models.vit import PatchEmbeddings, ViTConfig

    m, g = PATCH_EMBEDDING_MISTAKES, torch.Generator().manual_seed(7)
    name = getattr(cls, "__name__", "your class")
    for S, P, C_in, C in PATCH_EMBEDDING_CASES:
        config = ViTConfig(
            image_size=S, patch_size=P, n_channels=C_in, d_model=C, n_heads=4, d_ff=2 * C
        )
        N = config.n_patches
        torch.manual_seed(S * 100 + P)
        ref = PatchEmbeddings(config).eval()
        mine = build(cls, config, what=f"{name}(ViTConfig(image_size={S}, patch_size={P}, ...))")
        copy_weights(mine, embedding_state(ref, mine), "your module")
        mine.eval()
        images = torch.randn(3, C_in, S, S, generator=g)
        n_keep = max(1, N // 4)
        keep_idx = torch.rand(3, N, generator=g).argsort(1)[:, :n_keep].sort(1).values
        for keep in (None, keep_idx):
            what = f"pixel_values {[3, C_in, S, S]}" + (
                f", keep_idx {list(keep.shape)}" if keep is not None else ""
            )
            x_mine, x_ref = images.clone().requires_grad_(), images.clone().requires_grad_()
            args = (x_mine,) if keep is None else (x_mine, keep.clone())
            got = first_output(call(mine, *args, inputs=what), "your module's output")
            expected = ref(x_ref, keep)  # [B, 1 + N(_keep), C]
            T = expected.size(1)
            if got.dim() == 3 and got.size(0) == 3 and got.size(-1) == C and got.size(1) != T:
                if keep is not None and got.size(1) == N + 1:
                    raise Mistake(m["keep_ignored"].format(n_keep=n_keep, ref=T, got=N + 1))
                if got.size(1) == T - 1:
                    raise Mistake(m["no_cls"].format(got=T - 1, ref=T))
            expect_shape(got, expected.shape, "the output", "It should be [B, 1 + N, d_model].")
            if not close(got, expected):
                with torch.no_grad():
                    variants = patch_embedding_variants(ref, images, keep)
                raise Mistake(
                    diagnose(got.detach(), variants)
                    or f"the output differs from ptlearn's PatchEmbeddings (called with {what})."
                )
            grad_out = torch.randn(expected.shape, generator=g)
            (got * grad_out).sum().backward()
            (expected * grad_out).sum().backward()
            if mine.proj.weight.grad is None:
                raise Mistake(
                    "your module.proj gets no gradient: the patches must go through self.proj."
                )
            for p_name in ("cls_token", "position", "proj.bias"):
                mine_p = mine.get_parameter(p_name)
                ref_p = ref.get_parameter(p_name)
                if mine_p.grad is None or not close(mine_p.grad, ref_p.grad, 1e-4, 1e-3):
                    raise Mistake(
                        f"the outputs agree but the gradient of your module.{p_name} does not: "
                        "it is cut from the graph (.detach(), .data, torch.no_grad())."
                    )
            if not close(x_mine.grad, x_ref.grad, 1e-4, 1e-3):
                raise Mistake("the gradient with respect to pixel_values differs from ptlearn's.")
            mine.zero_grad()
            ref.zero_grad()
    return (
        "your patch embedding matches ptlearn's with the same weights: patches in raster order, "
        "projected, [CLS] in front, positions added (also with MAE's keep_idx), outputs and "
        "gradients, 3 shapes."
    )


VIT_CLASSIFIER_MISTAKES = {
    "shape": "the logits have shape {got}, expected [B, n_classes] = {ref}: classify from ONE "
    "token per image (the final [CLS], token 0).",
    "last_token": "you classified from the LAST token: ViT's head reads token 0, the [CLS] token "
    "that the embedding put in front.",
    "mean_pool": "you averaged all tokens: ViT's head reads only the final [CLS] vector (token 0).",
    "no_final_norm": "the final LayerNorm is missing: y = LN(z_L^0), then the head (ViT eq. 4).",
    "post_norm": "your blocks are post-norm: ViT's blocks are pre-norm (norm_first=True): "
    "x + attention(LN(x)), then x + MLP(LN(x)).",
    "probabilities": "you returned probabilities (a softmax): return the raw logits; the "
    "cross-entropy loss applies log-softmax itself.",
    "blocks_skipped": "the output equals running NO Transformer block: loop over self.blocks and "
    "keep each block's output (block(x)[0]).",
}


def vit_classifier_state(reference, learner) -> dict:
    """ptlearn's ``ViTForImageClassification`` weights under the stub's names: ``embeddings.*``,
    ``blocks.{i}.*``, ``norm.*``, ``classifier.*``."""
    state = {}
    emb = getattr(learner, "embeddings", None)
    for k, v in embedding_state(reference.vit.embeddings, emb).items():
        state[f"embeddings.{k}"] = v
    for i, block in enumerate(reference.vit.encoder.layers):
        for k, v in block.state_dict().items():
            state[f"blocks.{i}.{k}"] = v.detach().clone()
    for prefix, module in (("norm", reference.vit.norm), ("classifier", reference.classifier)):
        for k, v in module.state_dict().items():
            state[f"{prefix}.{k}"] = v.detach().clone()
    return state


def vit_classifier_variants(reference, images: Tensor) -> dict:
    """What the usual classifier mistakes return, from ptlearn's weights."""
    from ..layers import TransformerBlock

    m, c = VIT_CLASSIFIER_MISTAKES, reference.config
    head, norm = reference.classifier, reference.vit.norm
    z0 = reference.vit.embeddings(images)  # [B, 1 + N, C]
    z = z0
    for block in reference.vit.encoder.layers:
        z = block(z)[0]
    post = z0
    for block in reference.vit.encoder.layers:
        twin = TransformerBlock(
            c.d_model, c.n_heads, c.d_ff, c.dropout, c.activation, c.norm_eps, norm_first=False
        ).eval()
        twin.load_state_dict(block.state_dict())
        post = twin(post)[0]
    logits = head(norm(z)[:, 0])
    return {
        m["last_token"]: head(norm(z)[:, -1]),
        m["mean_pool"]: head(norm(z).mean(1)),
        m["no_final_norm"]: head(z[:, 0]),
        m["post_norm"]: head(norm(post)[:, 0]),
        m["probabilities"]: logits.softmax(-1),
        m["blocks_skipped"]: head(norm(z0)[:, 0]),
    }


@exercise("ViT classifier")
def check_vit_classifier(cls) -> str:
    """Check a module class ``cls(config)`` whose ``forward(pixel_values)`` returns logits
    ``[B, n_classes]`` against :class:`ptlearn.models.ViTForImageClassification` with the same
    weights (copied in).

    The stub's names: ``embeddings`` (a patch embedding with ptlearn's parameter names, see
    :func:`check_patch_embedding`), ``blocks`` (an ``nn.ModuleList`` of pre-norm
    :class:`ptlearn.layers.TransformerBlock`), ``norm`` (the final LayerNorm) and ``classifier``
    (``nn.Linear(d_model, n_classes)``). Names the mistakes in ``VIT_CLASSIFIER_MISTAKES``: the
    wrong token pooled (last, mean), no final LayerNorm, post-norm blocks, probabilities instead
    of logits, blocks skipped."""
    from ..models.vit import ViTConfig, ViTForImageClassification

    m, g = VIT_CLASSIFIER_MISTAKES, torch.Generator().manual_seed(11)
    name = getattr(cls, "__name__", "your class")
    for S, P, C_in, C, L, K in ((8, 2, 1, 16, 2, 10), (28, 7, 1, 32, 2, 5)):
        config = ViTConfig(
            image_size=S, patch_size=P, n_channels=C_in, d_model=C, n_heads=4, d_ff=2 * C,
            n_layers=L, n_classes=K,
        )  # fmt: skip
        torch.manual_seed(S + L)
        ref = ViTForImageClassification(config).eval()
        mine = build(cls, config, what=f"{name}(ViTConfig(image_size={S}, patch_size={P}, ...))")
        copy_weights(mine, vit_classifier_state(ref, mine), "your model")
        mine.eval()
        images = torch.randn(4, C_in, S, S, generator=g)
        what = f"pixel_values {[4, C_in, S, S]}"
        got = call(mine, images, inputs=what)
        got = getattr(got, "logits", got)
        got = first_output(got, "your model's output")
        expected = ref(images).logits  # [B, K]
        if tuple(got.shape) != tuple(expected.shape):
            raise Mistake(m["shape"].format(got=list(got.shape), ref=list(expected.shape)))
        if not close(got, expected):
            with torch.no_grad():
                variants = vit_classifier_variants(ref, images)
            raise Mistake(
                diagnose(got.detach(), variants)
                or f"the logits differ from ptlearn's ViTForImageClassification ({what})."
            )
        grad_out = torch.randn(expected.shape, generator=g)
        (got * grad_out).sum().backward()
        (expected * grad_out).sum().backward()
        ref_names = [k for k, _ in ref.named_parameters()]
        names = dict(zip(vit_classifier_state(ref, mine), ref_names))
        compare_gradients(mine, ref, {}, "your model", names)
    return (
        "your ViT classifier gives ptlearn's logits with the same weights: patch embedding, "
        "pre-norm blocks, final LayerNorm, head on [CLS]."
    )


UNSHUFFLE_MISTAKES = {
    "shape": "the result has shape {got}, expected [B, N, D] = {ref}: one vector per patch "
    "position, the visible patches AND a [MASK] copy at every hidden one.",
    "not_unshuffled": "the visible patches are all at the front, followed by the [MASK]s: put "
    "every visible vector back at ITS patch position (where mask is False).",
    "inverted": "the visible vectors sit at the HIDDEN positions: mask is True where a patch is "
    "hidden, so the [MASK] token goes where mask is True.",
    "wrong_permutation": "you gathered with the sort order itself; to undo a permutation gather "
    "with its inverse (argsort of the argsort), or write the visible vectors where ~mask.",
    "mask_token_missing": "the hidden positions are zeros: fill them with the learned [MASK] "
    "token (mask_token, one shared vector).",
}
# (B, N, n_keep, D): half visible (so an inverted mask has the right count), MAE's 25%, one kept
UNSHUFFLE_CASES = [(2, 8, 4, 6), (3, 16, 4, 8), (2, 5, 1, 4)]


def unshuffle_reference(visible: Tensor, mask_token: Tensor, mask: Tensor) -> Tensor:
    """``ViTMAE.decode``'s first step: visible ``[B, N_keep, D]`` + [MASK] -> ``[B, N, D]``."""
    from ..objectives import restore_ids

    B, N = mask.shape
    D = visible.size(-1)
    tokens = torch.cat([visible, mask_token.reshape(1, 1, D).expand(B, N - visible.size(1), D)], 1)
    return tokens.gather(1, restore_ids(mask)[..., None].expand(-1, -1, D))


@exercise("MAE unshuffle")
def check_mae_unshuffle(fn) -> str:
    """Check ``fn(visible, mask_token, mask) -> [B, N, D]``: the encoded visible patches
    ``visible [B, N_keep, D]`` (raster order, [CLS] removed) put back at their positions and the
    shared ``mask_token [1, 1, D]`` at every hidden one (``mask [B, N]``, True = hidden), as in
    :meth:`ptlearn.models.ViTMAE.decode`. Values and gradients. Names the mistakes in
    ``UNSHUFFLE_MISTAKES``: no unshuffle, inverted mask, the permutation instead of its inverse,
    zeros instead of [MASK]."""
    m, g = UNSHUFFLE_MISTAKES, torch.Generator().manual_seed(5)
    for B, N, n_keep, D in UNSHUFFLE_CASES:
        keep = torch.rand(B, N, generator=g).argsort(1)[:, :n_keep].sort(1).values
        mask = torch.ones(B, N, dtype=torch.bool)
        mask.scatter_(1, keep, False)
        visible = torch.randn(B, n_keep, D, generator=g)
        token = torch.randn(1, 1, D, generator=g)
        v_mine, t_mine = visible.clone().requires_grad_(), token.clone().requires_grad_()
        what = f"visible {[B, n_keep, D]}, mask_token {[1, 1, D]}, mask {[B, N]}"
        got = expect_tensor(call(fn, v_mine, t_mine, mask, inputs=what), "the result")
        expected = unshuffle_reference(visible, token, mask)
        if tuple(got.shape) != (B, N, D):
            raise Mistake(m["shape"].format(got=list(got.shape), ref=[B, N, D]))
        if not close(got, expected):
            order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
            front = torch.cat([visible, token.expand(B, N - n_keep, D)], 1)
            variants = {
                m["not_unshuffled"]: front,
                m["wrong_permutation"]: front.gather(1, order[..., None].expand(-1, -1, D)),
                m["mask_token_missing"]: unshuffle_reference(
                    visible, torch.zeros_like(token), mask
                ),
            }
            if n_keep * 2 == N:
                variants[m["inverted"]] = unshuffle_reference(visible, token, ~mask)
            raise Mistake(
                diagnose(got.detach(), variants)
                or f"the result differs from ViTMAE.decode's unshuffle (called with {what})."
            )
        grad_out = torch.randn(B, N, D, generator=g)
        (got * grad_out).sum().backward()
        if v_mine.grad is None or not close(
            v_mine.grad, grad_out.masked_select(~mask[..., None]).reshape(B, n_keep, D)
        ):
            raise Mistake("the gradient does not reach the visible vectors at their positions.")
        if t_mine.grad is None or not close(
            t_mine.grad.reshape(-1), (grad_out * mask[..., None]).sum((0, 1))
        ):
            raise Mistake(
                "the [MASK] token gets the wrong gradient: use mask_token itself (expanded), not a "
                "detached copy, so that training can learn it."
            )
    return "every visible patch back at its position, [MASK] at every hidden one (3 shapes)."
