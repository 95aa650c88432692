"""Fine-tuning a pretrained Transformer: fully, or by training a small number of parameters (PEFT).

Full fine-tuning updates all N weights, so every task stores a new N-sized copy of the model.
Parameter-efficient fine-tuning (PEFT) freezes the pretrained weights W and learns a small change:

- frozen encoder + head (a probe): train the classification head only;
- BitFit (Zaken et al. 2021, https://arxiv.org/abs/2106.10199): train only the bias vectors;
- LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685): ``W' = W + (alpha / r) B A`` with
  ``B A`` of rank r, learned for a few weight matrices;
- adapters (Houlsby et al. 2019, https://arxiv.org/abs/1902.00751): small bottleneck MLPs
  inserted after each attention and feed-forward sublayer;
- prefix tuning (Li & Liang 2021, https://arxiv.org/abs/2101.00190): learned key/value vectors
  prepended in every self-attention layer, which every real token can attend to.

Every ``apply_*`` function changes the model in place, freezes all weights except its own and those
of the modules named in ``train`` (the task head), and returns the model, so
``trainable_summary(apply_lora(model))`` tells the budget. The wrappers compose with the core
modules instead of editing them: LoRA replaces ``nn.Linear`` children, adapters and prefixes wrap a
block's ``attn``/``ffn``.

Why one file of ~440 lines: the five methods share the freezing rules, ``trainable_summary`` and
the classification head, and chapter 09 compares them side by side; each method is a short
section (a wrapper class and its ``apply_*``), so splitting would scatter one comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .attention import MultiHeadAttention
from .layers import TransformerBlock
from .outputs import ModelOutput, classification_output

Tensor = torch.Tensor


# --- freezing and counting ------------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones counted once); only those with ``requires_grad`` if asked."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into every parameter of ``module`` (the optimizer then leaves them alone)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Let gradients into every parameter of ``module`` again."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def trainable_summary(model: nn.Module) -> dict:
    """``{"trainable": int, "total": int, "percent": float}``: the fine-tuning budget at a glance."""
    trainable, total = count_parameters(model, trainable_only=True), count_parameters(model)
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}


def freeze_except(model: nn.Module, train: Iterable[str] = ("classifier",)) -> nn.Module:
    """Freeze ``model`` except the submodules whose name is, or starts with, one of ``train``
    (``"classifier"`` matches ``classifier.weight``; ``"bert.pooler"`` the pooler). A name that
    matches nothing raises ValueError, so a typo cannot silently freeze the head."""
    freeze(model)
    names = dict(model.named_parameters())
    for prefix in train:
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            top = sorted({n.split(".")[0] for n in names})
            raise ValueError(f"No parameters under {prefix!r} to train; top-level modules: {top}.")
        for n in matched:
            names[n].requires_grad_(True)
    return model


# --- a classification head for any encoder --------------------------------------------------------


class ClassificationHead(nn.Module):
    """logits = W dropout(h) + b: a pooled sentence vector ``[B, C]`` -> ``[B, n_classes]``."""

    def __init__(self, d_model: int, n_classes: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, n_classes)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.proj(self.dropout(pooled))


def pool(hidden: Tensor, attention_mask: Tensor | None, how: str) -> Tensor:
    """One vector per sequence from ``hidden [B, T, C]`` -> ``[B, C]``.

    - ``"cls"``: the first token (BERT's [CLS]; only meaningful for a bidirectional encoder);
    - ``"mean"``: the average over real tokens, ``sum_t m_t h_t / sum_t m_t``;
    - ``"last"``: the last real token (right padding assumed) — the one position of a causal
      model (GPT) that has seen the whole sequence.
    """
    if how == "cls":
        return hidden[:, 0]
    if attention_mask is None:
        attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
    if how == "mean":
        m = attention_mask.to(hidden.dtype)[..., None]  # [B, T, 1]
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    last = attention_mask.long().sum(1) - 1  # [B]  index of the last real token
    return hidden[torch.arange(hidden.size(0), device=hidden.device), last]


class SequenceClassifier(nn.Module):
    """Any encoder + pooling + :class:`ClassificationHead`, with the ptlearn call convention.

    ``encoder(input_ids=, attention_mask=, [token_type_ids=,] output_attentions=,
    output_hidden_states=)`` must return an object with ``.last_hidden_state [B, T, C]`` (ptlearn's
    BertModel, AlbertModel, GPT). BERT and ALBERT have their own ``*ForSequenceClassification``;
    this wrapper serves the other cases, e.g. a GPT read as an encoder with ``pooling="last"``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        d_model: int,
        n_classes: int,
        pooling: str = "cls",
        dropout: float = 0.1,
    ):
        super().__init__()
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"pooling must be 'cls', 'mean' or 'last', got {pooling!r}.")
        self.encoder, self.pooling, self.d_model = encoder, pooling, d_model
        self.classifier = ClassificationHead(d_model, n_classes, dropout)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **extra,
        )
        pooled = pool(out.last_hidden_state, attention_mask, self.pooling)  # [B, C]
        logits = self.classifier(pooled)  # [B, n_classes]
        kept = ModelOutput(
            last_hidden_state=out.last_hidden_state,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
        )
        return classification_output(kept, logits, labels)  # labels checked, then cross-entropy


# --- LoRA -----------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (Hu et al. 2021, eq. 3):

        h = W x + b + (alpha / r) B A x,     A: [r, in],  B: [out, r],  r << min(in, out)

    Fine-tuning changes of W seem to have a low "intrinsic rank", so the update ``dW = B A`` is
    restricted to rank r: ``r (in + out)`` parameters instead of ``in * out``. A starts random
    (Kaiming-uniform, as in the paper's code) and B at zero, so ``B A = 0`` and the wrapped model
    starts exactly equal to the pretrained one. ``alpha / r`` scales the update so that changing r
    does not require re-tuning the learning rate. After training, :meth:`merge` folds the update
    into W (``W <- W + (alpha / r) B A``): inference then costs nothing extra.
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0):
        super().__init__()
        if r <= 0:
            raise ValueError(f"LoRA rank r must be positive, got {r}.")
        self.base = freeze(base)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_A = nn.Parameter(base.weight.new_empty(r, base.in_features))  # [r, in]
        self.lora_B = nn.Parameter(base.weight.new_zeros(base.out_features, r))  # [out, r]
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        self.merged = False

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / r) B A`` as a full ``[out, in]`` matrix."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)  # [..., out]  W x + b
        if self.merged:
            return y  # the update already lives in W
        return y + self.scaling * (self.dropout(x) @ self.lora_A.T @ self.lora_B.T)  # + s B A x

    @torch.no_grad()
    def merge(self) -> nn.Linear:
        """W <- W + (alpha / r) B A; the forward pass then skips the low-rank path. Returns the
        base ``nn.Linear``, which now holds the merged weight."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True
        return self.base

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: back to the frozen W plus a separate update, to train on."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False


def replace_modules(
    model: nn.Module,
    match: Callable[[str, nn.Module], bool],
    make: Callable[[nn.Module], nn.Module],
) -> int:
    """Replace every child ``(name, module)`` for which ``match`` is true by ``make(module)``.

    A module shared by several parents (ALBERT) is replaced by one shared replacement. Returns
    the number of modules replaced.
    """
    made: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if match(name, child):
                if id(child) not in made:
                    made[id(child)] = make(child)
                setattr(parent, name, made[id(child)])
    return len(made)


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    targets: Iterable[str] = ("qkv_proj",),
    train: Iterable[str] = ("classifier",),
    layer: Callable[..., nn.Module] | None = None,
) -> nn.Module:
    """Wrap every ``nn.Linear`` whose attribute name is in ``targets`` in a :class:`LoRALinear`
    (or in ``layer(linear, r, alpha)``, e.g. a learner's own LoRA class) and freeze everything
    else except the modules named in ``train``.

    The default adapts the attention input projections of every :class:`MultiHeadAttention`.
    ptlearn keeps W_q, W_k and W_v stacked in one ``qkv_proj`` ``[3C, C]`` (as GPT-2 keeps them in
    ``c_attn``), so one low-rank update ``[3C, r] @ [r, C]`` adapts all three, with ``4 r C``
    parameters: exactly as many as the paper's choice of separate updates to W_q and W_v
    (section 7.1, ``2 x 2 r C``). ``"out_proj"``, ``"fc_in"``, ``"fc_out"`` (the FFN) work the
    same way.
    """
    targets = set(targets)
    freeze_except(model, train)
    n = replace_modules(
        model,
        lambda name, m: name in targets and isinstance(m, nn.Linear),
        lambda m: LoRALinear(m, r, alpha, dropout) if layer is None else layer(m, r, alpha),
    )
    if n == 0:
        raise ValueError(f"No nn.Linear named {sorted(targets)} in the model.")
    return model


def merge_lora(model: nn.Module, layer: type | None = None) -> nn.Module:
    """Fold every LoRA update into its weight and put the plain ``nn.Linear`` back: the model has
    its original architecture and speed, with the fine-tuned weights ``W + (alpha / r) B A``.
    ``layer``: the LoRA class to merge (default :class:`LoRALinear`); its ``merge()`` returns the
    merged ``nn.Linear``."""
    kind = layer or LoRALinear
    replace_modules(model, lambda name, m: isinstance(m, kind), lambda lora: lora.merge())
    return model


# --- bottleneck adapters --------------------------------------------------------------------------


class Adapter(nn.Module):
    """Houlsby et al. (2019), Fig. 2: ``h + W_up act(W_down h)``, bottleneck m << C.

    ``[B, T, C] -> [B, T, m] -> [B, T, C]`` plus a residual: ``2 m C + m + C`` parameters per
    adapter. The up-projection starts at zero, so the adapter starts as the identity and the model
    as the pretrained one (the paper uses a near-zero init for the same reason).
    """

    def __init__(self, d_model: int, bottleneck: int = 16):
        super().__init__()
        self.down = nn.Linear(d_model, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, d_model)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.up(self.act(self.down(h)))  # [B, T, C]


class WithAdapter(nn.Module):
    """Run a sublayer, then an :class:`Adapter` on its output (on the first element when the
    sublayer returns a tuple, as :class:`MultiHeadAttention` returns ``(out, weights)``)."""

    def __init__(self, sublayer: nn.Module, adapter: Adapter):
        super().__init__()
        self.sublayer, self.adapter = sublayer, adapter

    def forward(self, *args, **kwargs):
        out = self.sublayer(*args, **kwargs)
        if isinstance(out, tuple):
            return (self.adapter(out[0]), *out[1:])
        return self.adapter(out)


def blocks_of(model: nn.Module) -> list[TransformerBlock]:
    """Every distinct :class:`TransformerBlock` in ``model`` (a block listed twice comes once)."""
    return [m for m in model.modules() if isinstance(m, TransformerBlock)]


def apply_adapters(
    model: nn.Module, bottleneck: int = 16, train: Iterable[str] = ("classifier",)
) -> nn.Module:
    """Insert an adapter after each block's self-attention and after its feed-forward network,
    i.e. on the sublayer output before the residual add, as Houlsby et al. do, then train the
    adapters, every LayerNorm (as in the paper) and the modules named in ``train``."""
    freeze_except(model, train)
    for block in blocks_of(model):
        d_model = block.norm_ffn.normalized_shape[0]
        block.attn = WithAdapter(block.attn, Adapter(d_model, bottleneck))
        block.ffn = WithAdapter(block.ffn, Adapter(d_model, bottleneck))
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            unfreeze(m)
    return model


# --- prefix tuning --------------------------------------------------------------------------------


class PrefixCache:
    """Looks like a :class:`~ptlearn.attention.KVCache` to attention: ``update(k, v)`` returns
    ``cat(prefix, k)`` and ``cat(prefix, v)``. A real cache (generation) can sit underneath."""

    def __init__(self, k: Tensor, v: Tensor, inner=None):
        self.k, self.v, self.inner = k, v, inner  # [B, H, P, d_head]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.inner is not None:
            k, v = self.inner.update(k, v)  # the real past tokens first
        pk, pv = self.k.to(k.dtype), self.v.to(v.dtype)  # under autocast k may be bf16/fp16
        return torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # [B, H, P + T, d_head]


def extend_mask(mask: Tensor | None, n_prefix: int) -> Tensor | None:
    """Prepend ``n_prefix`` True key columns to a bool mask (``[B, 1, 1, Tk]`` or ``[Tq, Tk]``):
    every query may attend to every prefix position."""
    if mask is None:
        return None
    return torch.cat([mask.new_ones(*mask.shape[:-1], n_prefix), mask], dim=-1)


class PrefixAttention(nn.Module):
    """Self-attention with P learned key/value vectors in front of the real ones (Li & Liang 2021):

        head_i = softmax(q_i [P_k; K_i]^T / sqrt(d_head)) [P_v; V_i]

    ``P_k`` and ``P_v`` (``[P, C]`` each, split into heads like real keys) act like the keys and
    values of P virtual tokens that every real token sees; only they are trained. With
    ``reparam_dim`` they are produced by a small MLP ``P = MLP(P')``, which the paper found
    stabilises training; after training the MLP can be evaluated once and dropped.

    The attention weights then have ``Tk = P + T`` columns, the prefix first: use
    :func:`strip_prefix` before plotting them against the tokens.
    """

    def __init__(self, attn: nn.Module, n_prefix: int = 10, reparam_dim: int | None = None):
        super().__init__()
        mha = next(m for m in attn.modules() if isinstance(m, MultiHeadAttention))
        self.attn, self.n_prefix, self.n_heads = attn, n_prefix, mha.n_heads
        C = mha.n_heads * mha.d_head
        self.prefix = nn.Parameter(0.02 * torch.randn(n_prefix, C if reparam_dim else 2 * C))
        self.reparam = None
        if reparam_dim:
            self.reparam = nn.Sequential(
                nn.Linear(C, reparam_dim), nn.Tanh(), nn.Linear(reparam_dim, 2 * C)
            )

    def prefix_kv(self) -> tuple[Tensor, Tensor]:
        """The prefix keys and values, ``[1, H, P, d_head]`` each."""
        p = self.prefix if self.reparam is None else self.reparam(self.prefix)  # [P, 2C]
        k, v = p.chunk(2, dim=-1)  # [P, C] each
        return self.split_heads(k), self.split_heads(v)  # [1, H, P, d_head]

    def split_heads(self, t: Tensor) -> Tensor:
        return t.view(self.n_prefix, self.n_heads, -1).transpose(0, 1)[None]  # [1, H, P, d_head]

    def forward(self, x: Tensor, mask=None, causal=False, need_weights=False, cache=None):
        """Same call as :class:`MultiHeadAttention` self-attention; ``x: [B, T, C]``."""
        B = x.size(0)
        k, v = self.prefix_kv()
        prefix = PrefixCache(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1), cache)
        # causal: MultiHeadAttention shifts its mask by Tk - Tq = P, so query t sees the prefix + keys <= t
        mask = extend_mask(mask, self.n_prefix)  # [B, 1, 1, P + T]
        return self.attn(x, mask=mask, causal=causal, need_weights=need_weights, cache=prefix)


def apply_prefix_tuning(
    model: nn.Module,
    n_prefix: int = 10,
    reparam_dim: int | None = None,
    train: Iterable[str] = ("classifier",),
) -> nn.Module:
    """Give every block's self-attention its own learned prefix (:class:`PrefixAttention`) and
    freeze everything except the prefixes and the modules named in ``train``. (Blocks that are one
    shared module, as in ALBERT with ``share="all"``, share one prefix.)"""
    freeze_except(model, train)
    for block in blocks_of(model):
        block.attn = PrefixAttention(block.attn, n_prefix, reparam_dim)
    return model


def strip_prefix(attentions: tuple[Tensor, ...], n_prefix: int) -> tuple[Tensor, ...]:
    """Drop the prefix key columns: ``[B, H, T, P + T] -> [B, H, T, T]`` for plotting against the
    tokens. The remaining rows sum to less than 1: the rest of the weight went to the prefix."""
    return tuple(a[..., n_prefix:] for a in attentions)


# --- BitFit ---------------------------------------------------------------------------------------


def apply_bitfit(model: nn.Module, train: Iterable[str] = ("classifier",)) -> nn.Module:
    """Train only the bias vectors (every parameter named ``*.bias``: attention, FFN and LayerNorm
    biases) and the modules named in ``train`` (Zaken et al. 2021); about 0.1% of BERT-base."""
    freeze_except(model, train)
    for name, p in model.named_parameters():
        if name.rsplit(".", 1)[-1] == "bias":
            p.requires_grad_(True)
    return model
