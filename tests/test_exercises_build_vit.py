"""The build-it checkers of chapter 07 (the ViT patch embedding, the classifier, MAE's
unshuffle): a solution written here independently passes, each typical mistake gets its own
message, and the learner's embedding drops into ptlearn's ViT."""

import pytest
import torch
from torch import nn

from ptlearn.exercises.ch07 import (
    PATCH_EMBEDDING_MISTAKES,
    UNSHUFFLE_MISTAKES,
    VIT_CLASSIFIER_MISTAKES,
    check_mae_unshuffle,
    check_patch_embedding,
    check_vit_classifier,
)
from ptlearn.layers import TransformerBlock
from ptlearn.models import ViTConfig, ViTForImageClassification


def fails_with(result, message: str) -> None:
    assert not result.passed, result.message
    assert message.split("{")[0] in result.message, result.message


# --- the patch embedding ---------------------------------------------------------------------------


class Embedding(nn.Module):
    """A correct solution (patchify + Linear, as the chapter teaches) with switches that reproduce
    the typical mistakes."""

    mistake = None

    def __init__(self, config):
        super().__init__()
        c = config
        self.P = c.patch_size
        self.proj = nn.Linear(c.patch_size**2 * c.n_channels, c.d_model)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.position = nn.Parameter(torch.zeros(1, c.n_patches + 1, c.d_model))

    def forward(self, pixel_values, keep_idx=None):
        m, P = self.mistake, self.P
        B, C, H, W = pixel_values.shape
        grid = pixel_values.reshape(B, C, H // P, P, W // P, P)
        if m == "strips":
            patches = pixel_values.reshape(B, (H // P) * (W // P), P * P * C)
        elif m == "column_order":
            patches = grid.permute(0, 4, 2, 3, 5, 1).reshape(B, -1, P * P * C)
        else:
            patches = grid.permute(0, 2, 4, 3, 5, 1).reshape(B, -1, P * P * C)
        x = self.proj(patches)  # [B, N, C]
        N = x.size(1)
        if m == "positions_after_keep":
            if keep_idx is not None:
                x = torch.stack([x[b, keep_idx[b]] for b in range(B)])
            x = x + self.position[:, 1 : 1 + x.size(1)]
        else:
            if m == "shifted":
                x = x + self.position[:, :N]
            elif m != "no_positions":
                x = x + self.position[:, 1:]
            if keep_idx is not None and m != "keep_ignored":
                x = torch.stack([x[b, keep_idx[b]] for b in range(B)])  # indexing, not gather
        cls = self.cls_token if m in ("cls_no_position", "no_positions") else (
            self.cls_token + self.position[:, :1]
        )  # fmt: skip
        cls = cls.expand(B, -1, -1)
        if m == "no_cls":
            return x
        if m == "cls_last":
            return torch.cat([x, cls], dim=1)
        return torch.cat([cls, x], dim=1)


def with_mistake(name):
    return type(f"Embedding_{name}", (Embedding,), {"mistake": name})


class ConvEmbedding(nn.Module):
    """Also correct: the strided Conv2d, as ptlearn does it."""

    def __init__(self, config):
        super().__init__()
        c = config
        self.proj = nn.Conv2d(c.n_channels, c.d_model, c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.randn(1, 1, c.d_model))
        self.position = nn.Parameter(torch.randn(1, c.n_patches + 1, c.d_model))

    def forward(self, pixel_values, keep_idx=None):
        x = self.proj(pixel_values).flatten(2).transpose(1, 2) + self.position[:, 1:]
        if keep_idx is not None:
            x = x.gather(1, keep_idx[..., None].expand(-1, -1, x.size(-1)))
        cls = (self.cls_token + self.position[:, :1]).expand(x.size(0), -1, -1)
        return torch.cat([cls, x], dim=1)


def test_patch_embedding_solutions_pass():
    assert check_patch_embedding(Embedding).passed
    assert check_patch_embedding(ConvEmbedding).passed


@pytest.mark.parametrize(
    "mistake, key",
    [
        ("no_cls", "no_cls"),
        ("cls_last", "cls_last"),
        ("no_positions", "no_positions"),
        ("cls_no_position", "cls_no_position"),
        ("shifted", "positions_shifted"),
        ("strips", "strips"),
        ("column_order", "column_order"),
        ("positions_after_keep", "positions_after_keep"),
        ("keep_ignored", "keep_ignored"),
    ],
)
def test_patch_embedding_mistakes_are_named(mistake, key):
    fails_with(check_patch_embedding(with_mistake(mistake)), PATCH_EMBEDDING_MISTAKES[key])


def test_patch_embedding_wrong_names_and_stub():
    class Renamed(Embedding):
        def __init__(self, config):
            super().__init__(config)
            self.pos = self.position
            del self.position

    result = check_patch_embedding(Renamed)
    assert not result.passed and "not named like ptlearn's" in result.message

    class Stub(nn.Module):
        def __init__(self, config):
            raise NotImplementedError

    assert "not implemented yet" in check_patch_embedding(Stub).message


def test_learner_embedding_drops_into_ptlearns_vit():
    """The chapter trains ptlearn's ViT with the learner's embedding swapped in: it runs, learns
    (gradients reach it) and gives the reference's logits with the same weights."""
    from ptlearn.exercises.ch07 import embedding_state

    config = ViTConfig(image_size=28, patch_size=7, d_model=32, n_heads=4, d_ff=64, n_layers=1)
    torch.manual_seed(0)
    ref = ViTForImageClassification(config).eval()
    mine = ViTForImageClassification(config).eval()
    mine.load_state_dict(ref.state_dict())
    mine.vit.embeddings = Embedding(config)
    mine.vit.embeddings.load_state_dict(embedding_state(ref.vit.embeddings, mine.vit.embeddings))
    images = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(mine(images).logits, ref(images).logits, atol=1e-5, rtol=1e-4)
    mine(images, labels=torch.tensor([1, 2])).loss.backward()
    assert mine.vit.embeddings.proj.weight.grad is not None


# --- the classifier ------------------------------------------------------------------------------


class Classifier(nn.Module):
    mistake = None

    def __init__(self, config):
        super().__init__()
        c = config
        self.embeddings = ConvEmbedding(c)
        norm_first = self.mistake != "post_norm"
        self.blocks = nn.ModuleList(
            TransformerBlock(
                c.d_model,
                c.n_heads,
                c.d_ff,
                c.dropout,
                c.activation,
                c.norm_eps,
                norm_first=norm_first,
            )  # fmt: skip
            for _ in range(c.n_layers)
        )
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)
        self.classifier = nn.Linear(c.d_model, c.n_classes)

    def forward(self, pixel_values):
        m = self.mistake
        x = self.embeddings(pixel_values)
        for block in self.blocks:
            x = block(x)[0]
        if m != "no_final_norm":
            x = self.norm(x)
        pooled = {"last_token": x[:, -1], "mean_pool": x.mean(1)}.get(m, x[:, 0])
        logits = self.classifier(pooled)
        return logits.softmax(-1) if m == "probabilities" else logits


def classifier_with(name):
    return type(f"Classifier_{name}", (Classifier,), {"mistake": name})


def test_classifier_solution_passes():
    assert check_vit_classifier(Classifier).passed


@pytest.mark.parametrize(
    "mistake", ["last_token", "mean_pool", "no_final_norm", "post_norm", "probabilities"]
)
def test_classifier_mistakes_are_named(mistake):
    fails_with(check_vit_classifier(classifier_with(mistake)), VIT_CLASSIFIER_MISTAKES[mistake])


def test_classifier_all_tokens_names_the_shape():
    class AllTokens(Classifier):
        def forward(self, pixel_values):
            x = self.embeddings(pixel_values)
            for block in self.blocks:
                x = block(x)[0]
            return self.classifier(self.norm(x))  # [B, 1 + N, K]

    fails_with(check_vit_classifier(AllTokens), VIT_CLASSIFIER_MISTAKES["shape"])


# --- MAE's unshuffle ------------------------------------------------------------------------------


def unshuffle_solution(visible, mask_token, mask):
    B, N = mask.shape
    out = mask_token.reshape(1, 1, -1).expand(B, N, -1)  # [B, N, D]: [MASK] everywhere
    out = out.masked_scatter(~mask[..., None], visible)  # visible vectors at their positions
    return out


def test_unshuffle_solution_passes():
    assert check_mae_unshuffle(unshuffle_solution).passed


def test_unshuffle_mistakes_are_named():
    def front(visible, mask_token, mask):
        B, N = mask.shape
        hidden = mask_token.expand(B, N - visible.size(1), -1)
        return torch.cat([visible, hidden], 1)

    def permutation(visible, mask_token, mask):
        order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        tokens = front(visible, mask_token, mask)
        return tokens.gather(1, order[..., None].expand(-1, -1, tokens.size(-1)))

    def inverted(visible, mask_token, mask):
        return unshuffle_solution(visible, mask_token, ~mask)

    def zeros(visible, mask_token, mask):
        return unshuffle_solution(visible, torch.zeros_like(mask_token), mask)

    def detached(visible, mask_token, mask):
        return unshuffle_solution(visible, mask_token.detach(), mask)

    m = UNSHUFFLE_MISTAKES
    fails_with(check_mae_unshuffle(front), m["not_unshuffled"])
    fails_with(check_mae_unshuffle(permutation), m["wrong_permutation"])
    fails_with(check_mae_unshuffle(inverted), m["inverted"])
    fails_with(check_mae_unshuffle(zeros), m["mask_token_missing"])
    assert "[MASK] token gets the wrong gradient" in check_mae_unshuffle(detached).message


def test_unshuffle_matches_vitmae_decode():
    """The exercise's claim: ViTMAE.decode starts with exactly this unshuffle."""
    from ptlearn.models import ViTMAE
    from ptlearn.objectives import random_patch_mask, restore_ids

    config = ViTConfig(image_size=8, patch_size=2, d_model=16, n_heads=4, d_ff=32, n_layers=1,
                       decoder_d_model=8, decoder_n_heads=2, decoder_d_ff=16)  # fmt: skip
    torch.manual_seed(0)
    mae = ViTMAE(config).eval()
    keep_idx, mask = random_patch_mask(2, 16, 0.75, torch.Generator().manual_seed(0))
    latent = torch.randn(2, 1 + 4, 16)
    seen = {}
    hook = mae.decoder.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0]))
    mae.decode(latent, restore_ids(mask))
    hook.remove()
    y = mae.decoder_embed(latent)
    patches = unshuffle_solution(y[:, 1:], mae.mask_token, mask)
    expected = torch.cat([y[:, :1], patches], 1) + mae.decoder_position
    torch.testing.assert_close(seen["x"], expected)
