"""ViT and MAE: configs, patch embedding, shapes for any size and channel count, bad input,
patch masking, the masked-patch loss, loading MAE weights for fine-tuning, and learning digits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlearn.data.images import load_digits
from ptlearn.models import ViTConfig, ViTForImageClassification, ViTMAE, ViTModel
from ptlearn.objectives import patchify, random_patch_mask, restore_ids, unpatchify


def small(**overrides) -> ViTConfig:
    return ViTConfig(**{"d_model": 32, "n_heads": 4, "d_ff": 64, **overrides})


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="patch_size=3 does not divide image_size=8"):
        ViTConfig(image_size=8, patch_size=3)
    with pytest.raises(ValueError, match="decoder_n_heads=3 does not divide decoder_d_model=32"):
        ViTConfig(decoder_n_heads=3)
    with pytest.raises(ValueError, match="mask_ratio"):
        ViTConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="n_channels must be positive"):
        ViTConfig(n_channels=0)


@pytest.mark.parametrize("image,patch,channels", [(8, 2, 1), (12, 4, 3), (10, 5, 2), (6, 1, 4)])
def test_any_square_size_and_channel_count(image, patch, channels):
    config = small(image_size=image, patch_size=patch, n_channels=channels, n_classes=7)
    model = ViTForImageClassification(config).eval()
    out = model(torch.rand(2, channels, image, image), output_attentions=True)
    N = (image // patch) ** 2
    assert out.logits.shape == (2, 7)
    assert [a.shape for a in out.attentions] == [(2, 4, 1 + N, 1 + N)] * 2


def test_patch_conv_is_cut_flatten_and_one_linear():
    config = small(image_size=12, patch_size=4, n_channels=3)
    embed = ViTModel(config).embeddings
    x = torch.rand(2, 3, 12, 12)
    conv = embed.proj(x).flatten(2).transpose(1, 2)  # [B, N, C]
    # the conv weight [C, C_in, P, P] in patchify's (P, P, C_in) layout is a Linear's weight
    weight = embed.proj.weight.permute(0, 2, 3, 1).reshape(32, -1)  # [C, P*P*C_in]
    linear = patchify(x, 4) @ weight.T + embed.proj.bias  # [B, N, C]
    torch.testing.assert_close(conv, linear, rtol=1e-5, atol=1e-5)


def test_patchify_round_trip_and_layout():
    x = torch.rand(2, 3, 8, 8)
    patches = patchify(x, 4)
    assert patches.shape == (2, 4, 4 * 4 * 3)
    torch.testing.assert_close(patches[:, 1, :3], x[:, :, 0, 4])  # patch 1 = top right, pixel 0
    assert torch.equal(unpatchify(patches, 4, 3), x)


def test_bad_images_give_clear_errors():
    model = ViTForImageClassification(small())
    with pytest.raises(TypeError, match="must be floats"):
        model(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="3 channels but the model expects n_channels=1"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="16x16 images but the model expects 8x8"):
        model(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        model(torch.rand(2, 1, 8, 8), labels=torch.tensor([1, 10]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[0.0]])


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    n_patches=st.integers(1, 64),
    ratio=st.floats(0.0, 0.99),
    seed=st.integers(0, 99),
)
def test_patch_mask_keeps_exactly_the_requested_number(batch, n_patches, ratio, seed):
    keep_idx, mask = random_patch_mask(batch, n_patches, ratio, torch.Generator().manual_seed(seed))
    n_keep = int(n_patches * (1 - ratio))
    assert keep_idx.shape == (batch, n_keep) and mask.shape == (batch, n_patches)
    assert torch.all((~mask).sum(1) == n_keep)
    assert torch.all(~mask.gather(1, keep_idx))  # the kept patches are exactly the unmasked ones
    assert torch.all(keep_idx.diff(dim=1) > 0)  # distinct, in raster order
    order = torch.cat([keep_idx, torch.nonzero(mask)[:, 1].view(batch, n_patches - n_keep)], dim=1)
    assert torch.equal(
        order.gather(1, restore_ids(mask)), torch.arange(n_patches).expand(batch, -1)
    )


def test_patch_mask_differs_per_image_and_repeats_with_a_seed():
    a = random_patch_mask(8, 16, 0.75, torch.Generator().manual_seed(3))[1]
    b = random_patch_mask(8, 16, 0.75, torch.Generator().manual_seed(3))[1]
    assert torch.equal(a, b) and not all(torch.equal(a[0], row) for row in a)


def test_mae_encodes_visible_patches_and_scores_only_hidden_ones():
    config = small(image_size=8, patch_size=2, mask_ratio=0.75)  # 16 patches, 4 visible
    mae = ViTMAE(config)
    out = mae(
        torch.rand(3, 1, 8, 8), output_attentions=True, generator=torch.Generator().manual_seed(0)
    )
    assert out.last_hidden_state.shape == (3, 1 + 4, 32)
    assert [a.shape for a in out.attentions] == [(3, 4, 5, 5)] * 2
    assert out.logits.shape == (3, 16, 4) and out.mask.sum().item() == 3 * 12
    out.logits.retain_grad()
    out.loss.backward()
    grad = out.logits.grad.abs().sum(-1)  # [B, N]
    assert torch.all(grad[~out.mask] == 0) and torch.all(grad[out.mask] > 0)


def test_mae_loss_is_mse_against_normalised_patches():
    mae = ViTMAE(small())
    x = torch.rand(2, 1, 8, 8)
    out = mae(x, generator=torch.Generator().manual_seed(1))
    target = patchify(x, 2)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    expected = ((out.logits - target) ** 2).mean(-1)[out.mask].mean()
    torch.testing.assert_close(out.loss, expected)


def test_classifier_from_mae_starts_from_the_mae_encoder():
    mae = ViTMAE(small())
    clf = ViTForImageClassification.from_mae(mae, n_classes=3)
    assert clf.classifier.out_features == 3
    ours, theirs = clf.vit.state_dict(), mae.vit.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert clf.vit.embeddings.proj.weight.data_ptr() != mae.vit.embeddings.proj.weight.data_ptr()


def train(model, x, y, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = model(x[idx], labels=y[idx]).loss  # MAE ignores the labels
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_mae_reconstruction_loss_falls_on_digits():
    x, y = load_digits("train")
    losses = train(ViTMAE(small()), x, y, 60)
    assert sum(losses[-10:]) < 0.85 * sum(losses[:10])


def test_vit_learns_digits():
    x, y = load_digits("train")
    x_test, y_test = load_digits("test")
    model = ViTForImageClassification(small())
    train(model, x, y, 120)
    with torch.no_grad():
        accuracy = (model.eval()(x_test).logits.argmax(-1) == y_test).float().mean().item()
    assert accuracy > 0.75
