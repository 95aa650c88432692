"""ViT: a Transformer encoder that reads an image as a sequence of patches; MAE: its pretraining
by reconstructing hidden patches.

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale"
(2020), https://arxiv.org/abs/2010.11929. Cut the image into N = (H_img / P)^2 square patches, flatten
each into P * P * C_in numbers, project them to width C with one shared linear map E, prepend a
learned [CLS] token and add learned positions (eq. 1):

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos                 # [B, 1 + N, C]
    z_l = pre-norm Transformer block(z_{l-1}),  l = 1..L           # eqs. 2-3, bidirectional
    y   = LN(z_L^0)                                                # the final [CLS] -> class head

Nothing in the architecture knows that patches are neighbours in 2-D: the positions are learned.
This weak inductive bias is why ViT needs much data; its headline results came from supervised
pretraining on large labelled sets (ImageNet-21k, JFT-300M). The paper tried masked patch
prediction only as a small self-supervised experiment (section 4.6), well behind supervised
pretraining.

He et al., "Masked Autoencoders Are Scalable Vision Learners" (2021),
https://arxiv.org/abs/2111.06377, made self-supervised ViT pretraining work (Fig. 1): hide a large
random subset of patches (75%) and run the encoder on the visible ones only (a quarter of the
tokens: training is 3x faster or more). A light decoder then gets the encoded patches plus a
shared learned [MASK] token at every hidden position and predicts their pixels. The loss is the
mean squared error on the hidden patches only, with each target patch normalised by its own
mean and variance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..config import BaseConfig, check_positive_int
from ..hf import HFConvertible
from ..hf.vit import VIT_FOR_IMAGE_CLASSIFICATION, VIT_MODEL
from ..layers import TransformerBlock, blocks
from ..objectives import patchify, random_patch_mask, restore_ids, unpatchify
from ..outputs import ModelOutput, classification_output
from ..transformer import Encoder
from ..validation import check_finite

Tensor = torch.Tensor


@dataclass
class ViTConfig(BaseConfig):
    """ViT (and MAE) hyper-parameters; the defaults build a tiny model for 8x8 digits.

    ``vocab_size`` and ``max_len`` are inherited but unused: a ViT reads pixels, not token ids,
    and has ``n_patches + 1`` positions.
    """

    norm_eps: float = 1e-12  # HF ViT's LayerNorm epsilon
    image_size: int = 8  # images are image_size x image_size pixels
    patch_size: int = 2  # patches are patch_size x patch_size; must divide image_size
    n_channels: int = 1  # 1 = grey, 3 = RGB
    n_classes: int = 10  # labels of ViTForImageClassification
    # ViTMAE only: masking and the light decoder
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    decoder_d_model: int = 32
    decoder_n_layers: int = 1
    decoder_n_heads: int = 4
    decoder_d_ff: int = 128
    norm_pix_loss: bool = True  # targets: each patch normalised by its own mean and variance

    def validate(self) -> None:
        super().validate()
        for name in ("image_size", "patch_size", "n_channels", "n_classes"):
            check_positive_int(self, name)
        for name in ("decoder_d_model", "decoder_n_layers", "decoder_n_heads", "decoder_d_ff"):
            check_positive_int(self, name)
        if self.image_size % self.patch_size != 0:
            raise ValueError(
                f"patch_size={self.patch_size} does not divide image_size={self.image_size}: "
                f"the image must split into whole patches."
            )
        if self.decoder_d_model % self.decoder_n_heads != 0:
            raise ValueError(
                f"decoder_n_heads={self.decoder_n_heads} does not divide "
                f"decoder_d_model={self.decoder_d_model}."
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}.")

    @property
    def n_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_dim(self) -> int:
        """Pixels in one patch: P * P * C_in."""
        return self.patch_size**2 * self.n_channels


# Named recipes, used as ``ViTConfig(**VIT_PRESETS["digits"])``. "digits" fits scikit-learn's 8x8
# digits: 4x4 patches make 4 tokens + [CLS]. Trained with ``TrainConfig(**VIT_TRAIN_PRESETS[
# "digits"])`` for 60 s it reaches ~98% test accuracy on a 2-core CPU (benchmarks/vit_digits.py).
VIT_PRESETS = {
    "digits": dict(
        image_size=8, patch_size=4, n_channels=1, d_model=96, n_layers=4, d_ff=192, dropout=0.1
    ),
}
VIT_TRAIN_PRESETS = {  # TrainConfig fields
    "digits": dict(lr=2e-3, batch_size=128, warmup_steps=50, weight_decay=0.05),
}


class PatchEmbeddings(nn.Module):
    """Image -> sequence of vectors: patches projected to width C, [CLS] in front, positions added.

    The projection is a Conv2d with kernel = stride = P. That IS "cut the image into
    non-overlapping P x P patches, flatten each and apply one shared ``Linear(P*P*C_in, C)``": each
    output position of the convolution sees exactly one patch, and the conv's weight
    ``[C, C_in, P, P]`` is that linear layer's weight reshaped. The conv just does it in one call.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        c = config
        self.proj = nn.Conv2d(
            c.n_channels, c.d_model, kernel_size=c.patch_size, stride=c.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.position = nn.Parameter(torch.zeros(1, c.n_patches + 1, c.d_model))  # [1, 1 + N, C]
        self.dropout = nn.Dropout(c.dropout)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, pixel_values: Tensor, keep_idx: Tensor | None = None) -> Tensor:
        """``[B, C_in, H_img, W_img]`` -> ``[B, 1 + N, C]`` (``[B, 1 + N_keep, C]`` with ``keep_idx``)."""
        x = self.proj(pixel_values)  # [B, C, H_img/P, W_img/P]  one vector per patch
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]  patches in raster order
        x = x + self.position[:, 1:]  # each patch gets its position before any is dropped
        if keep_idx is not None:  # MAE: only the visible patches go on
            x = x.gather(1, keep_idx[..., None].expand(-1, -1, x.size(-1)))  # [B, N_keep, C]
        cls = (self.cls_token + self.position[:, :1]).expand(x.size(0), -1, -1)  # [B, 1, C]
        return self.dropout(torch.cat([cls, x], dim=1))


class ViTModel(HFConvertible, nn.Module):
    """Patch embeddings -> pre-norm encoder -> final LayerNorm: ``last_hidden_state [B, 1 + N, C]``
    (row 0 is [CLS]). ``hidden_states`` are the embeddings and every block's output before the
    final norm, as in HF ViT."""

    config_class = ViTConfig
    hf_converter = VIT_MODEL

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = PatchEmbeddings(c)
        self.encoder = Encoder(blocks(c, norm_first=True))
        self.norm = nn.LayerNorm(c.d_model, eps=c.norm_eps)

    def forward(
        self,
        pixel_values: Tensor,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        keep_idx: Tensor | None = None,
    ) -> ModelOutput:
        """pixel_values ``[B, C_in, H_img, W_img]`` floats; keep_idx ``[B, N_keep]``: encode only these
        patches (MAE)."""
        check_pixel_values(pixel_values, self.config)
        x = self.embeddings(pixel_values, keep_idx)  # [B, 1 + N, C]
        out = self.encoder(x, None, output_attentions, output_hidden_states)
        return replace(out, last_hidden_state=self.norm(out.last_hidden_state))


class ViTForImageClassification(HFConvertible, nn.Module):
    """ViT + a linear head on the final [CLS] vector: ``.logits [B, n_classes]``, cross-entropy
    ``loss`` against ``labels [B]``. ``n_classes`` overrides ``config.n_classes``."""

    config_class = ViTConfig
    hf_converter = VIT_FOR_IMAGE_CLASSIFICATION

    def __init__(self, config: ViTConfig, n_classes: int | None = None):
        super().__init__()
        if n_classes is not None:
            config = replace(config, n_classes=n_classes)  # validated again
        self.config = c = config
        self.vit = ViTModel(c)
        self.classifier = nn.Linear(c.d_model, c.n_classes)

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        out = self.vit(pixel_values, output_attentions, output_hidden_states)
        logits = self.classifier(out.last_hidden_state[:, 0])  # [B, n_classes]  from [CLS]
        return classification_output(out, logits, labels, item="image")

    @classmethod
    def from_mae(cls, mae: ViTMAE, n_classes: int | None = None) -> ViTForImageClassification:
        """Fine-tuning after MAE pretraining: a classifier whose encoder starts as a copy of the
        MAE encoder; the MAE decoder is dropped and the head is new."""
        model = cls(mae.config, n_classes)
        model.vit.load_state_dict(mae.vit.state_dict())
        return model


@dataclass
class MAEOutput(ModelOutput):
    """:class:`ModelOutput` plus MAE's ``mask [B, N]`` (True = hidden patch) and ``ids_restore
    [B, N]`` (where each patch sits in the decoder's visible-then-hidden order). ``logits`` are the
    predicted pixels of every patch, ``[B, N, P * P * C_in]``."""

    mask: Tensor | None = None
    ids_restore: Tensor | None = None


class ViTMAE(nn.Module):
    """Masked autoencoder: a ViT encoder over the visible patches, a light decoder over all."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.vit = ViTModel(c)  # the encoder, loaded later by ViTForImageClassification.from_mae
        D = c.decoder_d_model  # the decoder is narrower and shallower than the encoder
        self.decoder_embed = nn.Linear(c.d_model, D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))  # one learned [MASK], shared
        self.decoder_position = nn.Parameter(torch.zeros(1, c.n_patches + 1, D))
        blocks = [
            TransformerBlock(
                D, c.decoder_n_heads, c.decoder_d_ff, c.dropout, c.activation, c.norm_eps, True
            )
            for _ in range(c.decoder_n_layers)
        ]
        self.decoder = Encoder(blocks, nn.LayerNorm(D, eps=c.norm_eps))
        self.decoder_pred = nn.Linear(D, c.patch_dim)  # back to pixels
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.decoder_position, std=0.02)

    def forward(
        self,
        pixel_values: Tensor,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        generator: torch.Generator | None = None,
    ) -> MAEOutput:
        """pixel_values ``[B, C_in, H_img, W_img]``. ``labels`` are ignored (the targets are the pixels);
        the argument exists so that a labelled image batch can be passed as is. ``generator``
        fixes the random mask."""
        check_pixel_values(pixel_values, self.config)
        B, N = pixel_values.size(0), self.config.n_patches
        keep_idx, mask = random_patch_mask(B, N, self.config.mask_ratio, generator)
        keep_idx, mask = keep_idx.to(pixel_values.device), mask.to(pixel_values.device)
        enc = self.vit(pixel_values, output_attentions, output_hidden_states, keep_idx=keep_idx)
        ids_restore = restore_ids(mask)  # [B, N]
        pred = self.decode(enc.last_hidden_state, ids_restore)  # [B, N, patch_dim]
        loss = self.reconstruction_loss(pixel_values, pred, mask)
        return MAEOutput(
            loss=loss,
            logits=pred,
            last_hidden_state=enc.last_hidden_state,  # [B, 1 + N_keep, C]  visible patches only
            hidden_states=enc.hidden_states,
            attentions=enc.attentions,
            mask=mask,
            ids_restore=ids_restore,
        )

    def decode(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """Encoded visible tokens ``[B, 1 + N_keep, C]`` -> predicted pixels ``[B, N, patch_dim]``."""
        y = self.decoder_embed(latent)  # [B, 1 + N_keep, D]  to the decoder's width
        B, N = ids_restore.shape
        hidden = self.mask_token.expand(B, N + 1 - y.size(1), -1)  # [B, N - N_keep, D]
        patches = torch.cat([y[:, 1:], hidden], dim=1)  # [B, N, D]  visible first, then [MASK]s
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, y.size(-1)))  # raster
        y = torch.cat([y[:, :1], patches], dim=1) + self.decoder_position  # [B, 1 + N, D]
        y = self.decoder(y).last_hidden_state
        return self.decoder_pred(y[:, 1:])  # [B, N, patch_dim]  ([CLS] dropped)

    def reconstruction_loss(self, pixel_values: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
        """Mean squared error over the hidden patches only (the visible ones were given away)."""
        target = self.patchify(pixel_values)  # [B, N, patch_dim]
        if self.config.norm_pix_loss:  # predict each patch's pattern, not its brightness
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(dim=-1)  # [B, N]
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def patchify(self, images: Tensor) -> Tensor:
        return patchify(images, self.config.patch_size)

    def unpatchify(self, patches: Tensor) -> Tensor:
        return unpatchify(patches, self.config.patch_size, self.config.n_channels)


def check_pixel_values(pixel_values, config: ViTConfig) -> None:
    """pixel_values must be a float tensor ``[B, n_channels, image_size, image_size]``."""
    C, S = config.n_channels, config.image_size
    expected = f"[batch, {C}, {S}, {S}] (channels first)"
    if not isinstance(pixel_values, Tensor):
        raise TypeError(f"pixel_values must be a torch.Tensor, got {type(pixel_values).__name__}.")
    if not pixel_values.is_floating_point():
        raise TypeError(
            f"pixel_values must be floats, got dtype {pixel_values.dtype}. Convert with "
            f"pixel_values.float() (and scale 0-255 pixel bytes to [0, 1] by dividing by 255)."
        )
    shape = tuple(pixel_values.shape)
    if len(shape) != 4:
        hint = " For a single image use pixel_values.unsqueeze(0)." if len(shape) == 3 else ""
        raise ValueError(f"pixel_values must have shape {expected}, got {shape}.{hint}")
    if shape[1] != C:
        raise ValueError(
            f"pixel_values have {shape[1]} channels but the model expects n_channels={C}: "
            f"expected shape {expected}, got {shape}."
        )
    if shape[2:] != (S, S):
        raise ValueError(
            f"pixel_values are {shape[2]}x{shape[3]} images but the model expects {S}x{S} "
            f"(config.image_size={S}): resize the images or build a ViTConfig with that size."
        )
    if shape[0] == 0:
        raise ValueError(
            f"pixel_values is an empty batch (shape {shape}): pass at least one image."
        )
    check_finite(pixel_values, "pixel_values")
