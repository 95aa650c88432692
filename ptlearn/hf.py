"""Weights in and out of HF ``transformers``: ``from_hf``, ``to_hf`` and ``from_pretrained``.

A checkpoint is just named tensors. Converting one means (1) reading the HF config into ours and
(2) renaming — sometimes transposing or splitting — each tensor into our module layout. Both steps
are plain functions per model family below, so a reader can see exactly which HF tensor becomes
which ptlearn parameter.

``from_pretrained`` reads a directory written by HF ``save_pretrained`` (``config.json`` +
``model.safetensors``) without importing ``transformers`` at all; a hub name is fetched with
``huggingface_hub`` when online. Pickled ``pytorch_model.bin`` files can run arbitrary code when
loaded, so they are refused unless the caller passes ``allow_pickle=True`` (and even then they are
read with ``torch.load(weights_only=True)``). Remote code is never run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# Generic machinery (lead)
# --------------------------------------------------------------------------------------------


def resolve_pretrained_dir(name_or_dir: str | os.PathLike) -> Path:
    """A local directory as is; otherwise download the hub repo's config and safetensors files."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; from_pretrained expects a directory or a hub name.")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # pragma: no cover - huggingface_hub ships with transformers
        raise ValueError(
            f"{name_or_dir!r} is not a local directory, and huggingface_hub is not installed to "
            f"download it. `pip install huggingface_hub`, or pass a save_pretrained directory."
        ) from err
    try:
        local = snapshot_download(
            str(name_or_dir), allow_patterns=["config.json", "*.safetensors", "*.json", "*.txt"]
        )
    except Exception as err:
        raise ValueError(
            f"Could not find {name_or_dir!r} locally or download it from the HF hub ({err}). "
            f"Check the name and your connection, or pass a directory written by save_pretrained."
        ) from err
    return Path(local)


def read_hf_checkpoint(
    directory: Path, allow_pickle: bool = False
) -> tuple[dict, dict[str, Tensor]]:
    """Return ``(config_dict, state_dict)`` from a ``save_pretrained`` directory."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{directory} has no config.json: is it a save_pretrained directory?")
    config = json.loads(config_file.read_text())
    safetensors_files = sorted(directory.glob("*.safetensors"))
    if safetensors_files:
        from safetensors.torch import load_file

        state = {}
        for f in safetensors_files:
            try:
                state.update(load_file(str(f)))
            except Exception as err:
                raise ValueError(
                    f"Could not read {f}: the file is truncated or not safetensors ({err})."
                ) from err
        return config, state
    pickled = sorted(directory.glob("*.bin"))
    if not pickled:
        raise ValueError(f"{directory} holds no *.safetensors (or *.bin) weights.")
    if not allow_pickle:
        raise ValueError(
            f"{directory} only has pickled weights ({pickled[0].name}). Unpickling a file from a "
            f"stranger can run arbitrary code, so ptlearn refuses it. Convert it to safetensors, or "
            f"pass allow_pickle=True if you trust its source (it is then read with weights_only=True)."
        )
    state = {}
    for f in pickled:
        state.update(torch.load(f, map_location="cpu", weights_only=True))
    return config, state


def load_state_dict_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; on any missing, unexpected or mis-shaped key raise one
    ValueError that lists them all (``source`` names where the weights came from)."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = [
        f"{k}: model {tuple(own[k].shape)} vs {source} {tuple(state[k].shape)}"
        for k in own
        if k in state and own[k].shape != state[k].shape
    ]
    if missing or unexpected or mismatched:
        lines = [f"The weights from {source} do not fit this {type(model).__name__}'s config:"]
        if mismatched:
            lines += ["  shape mismatch:"] + [f"    {m}" for m in mismatched]
        if missing:
            lines += [f"  missing keys: {missing}"]
        if unexpected:
            lines += [f"  unexpected keys: {unexpected}"]
        lines.append("Build the model from the checkpoint's own config (from_pretrained does).")
        raise ValueError("\n".join(lines))
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k])


class HFConvertible:
    """Mixed into every ptlearn model that has an HF counterpart.

    A model class sets ``hf_family`` (a key of ``FAMILIES``); the family's two functions turn an HF
    config dict into our config and an HF state dict into ours. ``FAMILIES`` maps a family name to
    ``(config_from_hf, weights_from_hf)``; each family section below adds its entry.
    """

    hf_family: str = ""

    @classmethod
    def from_hf(cls, hf_model) -> nn.Module:
        """Copy the weights of an HF ``transformers`` model (already built) into a new ptlearn model."""
        return cls._from_hf_parts(
            hf_model.config.to_dict(), hf_model.state_dict(), type(hf_model).__name__
        )

    @classmethod
    def from_pretrained(
        cls, name_or_dir: str | os.PathLike, allow_pickle: bool = False
    ) -> nn.Module:
        """Load a hub model (online) or a local ``save_pretrained`` directory. Never runs remote code."""
        directory = resolve_pretrained_dir(name_or_dir)
        config, state = read_hf_checkpoint(directory, allow_pickle)
        return cls._from_hf_parts(config, state, str(directory))

    @classmethod
    def _from_hf_parts(cls, hf_config: dict, hf_state: dict[str, Tensor], source: str) -> nn.Module:
        config_from_hf, weights_from_hf = FAMILIES[cls.hf_family]
        config = config_from_hf(cls, hf_config)
        model = cls(config)
        load_state_dict_strict(model, weights_from_hf(cls, hf_state, config), source)
        return model.eval()


FAMILIES: dict[str, tuple] = {}


# --------------------------------------------------------------------------------------------
# BERT and ALBERT
# --------------------------------------------------------------------------------------------
# HF BERT layer i lives at ``encoder.layer.{i}``; HF ALBERT keeps its shared layer once, at
# ``encoder.albert_layer_groups.0.albert_layers.0`` (num_hidden_groups=1), or one per layer
# (num_hidden_groups=num_hidden_layers). The tables below name, for each ptlearn module, the HF
# module holding the same weights; ``.weight``/``.bias`` are appended to both sides.

_ACT_FROM_HF = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# values HF omits from config.json when they are its defaults
_BERT_HF_DEFAULTS = dict(
    max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12, hidden_dropout_prob=0.1
)
_ALBERT_HF_DEFAULTS = dict(
    _BERT_HF_DEFAULTS, hidden_act="gelu_new", num_hidden_groups=1, inner_group_num=1
)

_EMBEDDINGS = {
    "token": "word_embeddings",
    "position": "position_embeddings",
    "segment": "token_type_embeddings",
    "norm": "LayerNorm",
}
_BERT_LAYER = {
    "attn.q_proj": "attention.self.query",
    "attn.k_proj": "attention.self.key",
    "attn.v_proj": "attention.self.value",
    "attn.out_proj": "attention.output.dense",
    "norm_attn": "attention.output.LayerNorm",
    "ffn.fc_in": "intermediate.dense",
    "ffn.fc_out": "output.dense",
    "norm_ffn": "output.LayerNorm",
}
_ALBERT_LAYER = {
    "attn.q_proj": "attention.query",
    "attn.k_proj": "attention.key",
    "attn.v_proj": "attention.value",
    "attn.out_proj": "attention.dense",
    "norm_attn": "attention.LayerNorm",
    "ffn.fc_in": "ffn",
    "ffn.fc_out": "ffn_output",
    "norm_ffn": "full_layer_layer_norm",
}
_ALWAYS_IGNORED = ("embeddings.position_ids", "embeddings.token_type_ids")  # HF buffers
_OLD_NAMES = {"LayerNorm.gamma": "LayerNorm.weight", "LayerNorm.beta": "LayerNorm.bias"}  # TF-era

# per ptlearn class: (prefix of our backbone, {our head module: HF head module},
#                     HF key prefixes this class may ignore: heads it lacks, tied duplicates)
_BERT_CLASSES = {
    "BertModel": ("", {}, ("cls.", "classifier.")),
    "BertForPreTraining": (
        "bert.",
        {
            "mlm.dense": "cls.predictions.transform.dense",
            "mlm.norm": "cls.predictions.transform.LayerNorm",
            "mlm.decoder": "cls.predictions",  # bias; the weight is tied to the embeddings
            "pair_head": "cls.seq_relationship",
        },
        ("cls.predictions.decoder.",),
    ),
    "BertForSequenceClassification": ("bert.", {"classifier": "classifier"}, ()),
}
_ALBERT_CLASSES = {
    "AlbertModel": ("", {}, ("predictions.", "sop_classifier.", "classifier.")),
    "AlbertForPreTraining": (
        "albert.",
        {
            "mlm.dense": "predictions.dense",
            "mlm.norm": "predictions.LayerNorm",
            "mlm.decoder": "predictions",
            "pair_head": "sop_classifier.classifier",
        },
        ("predictions.decoder.",),
    ),
    "AlbertForSequenceClassification": ("albert.", {"classifier": "classifier"}, ()),
}


def activation_from_hf(name: str) -> str:
    """HF ``hidden_act`` -> ptlearn: "gelu" is the exact GELU, "gelu_new" its tanh approximation."""
    if name not in _ACT_FROM_HF:
        raise ValueError(
            f"HF activation {name!r} is not supported; use one of {sorted(_ACT_FROM_HF)}."
        )
    return _ACT_FROM_HF[name]


def _encoder_config_fields(hf: dict, model_type: str) -> dict:
    """The fields BERT and ALBERT share, from HF's names to ptlearn's."""
    if hf.get("model_type", model_type) != model_type:
        raise ValueError(
            f"The checkpoint is a {hf['model_type']!r} model, not {model_type!r}: "
            f"load it with the matching ptlearn class."
        )
    for key, supported in (("position_embedding_type", "absolute"), ("is_decoder", False)):
        if hf.get(key, supported) != supported:
            raise ValueError(
                f"HF config has {key}={hf[key]!r}; ptlearn supports only {supported!r}."
            )
    return dict(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        max_len=hf["max_position_embeddings"],
        type_vocab_size=hf["type_vocab_size"],
        dropout=hf["hidden_dropout_prob"],
        activation=activation_from_hf(hf["hidden_act"]),
        norm_eps=hf["layer_norm_eps"],
        pad_id=hf.get("pad_token_id") or 0,
        n_classes=len(hf.get("id2label") or {}) or hf.get("num_labels", 2),
    )


def bert_config_from_hf(cls, hf: dict):
    from .models.bert import BertConfig

    return BertConfig(**_encoder_config_fields({**_BERT_HF_DEFAULTS, **hf}, "bert"))


def albert_config_from_hf(cls, hf: dict):
    """HF ALBERT groups layers; ptlearn supports one group for all layers (``share="all"``) and
    one group per layer (``share="none"``), each group holding one layer."""
    from .models.albert import AlbertConfig

    hf = {**_ALBERT_HF_DEFAULTS, **hf}
    groups, inner = hf["num_hidden_groups"], hf["inner_group_num"]
    if inner != 1 or groups not in (1, hf["num_hidden_layers"]):
        raise ValueError(
            f"ALBERT with num_hidden_groups={groups}, inner_group_num={inner} is not supported: "
            f"ptlearn reads num_hidden_groups=1 (share='all') or =num_hidden_layers (share='none'), "
            f"with inner_group_num=1."
        )
    share = "all" if groups == 1 else "none"
    return AlbertConfig(
        **_encoder_config_fields(hf, "albert"), d_embed=hf["embedding_size"], share=share
    )


def _family_entry(cls, table: dict) -> tuple:
    """The table row of ``cls`` or of the nearest base class that has one."""
    for klass in cls.__mro__:
        if klass.__name__ in table:
            return table[klass.__name__]
    raise ValueError(f"{cls.__name__} has no HF weight mapping.")


def _weight_pairs(cls, config, table: dict, layer_name: str, layer: dict, extra: dict) -> tuple:
    """``[(ptlearn tensor name, HF tensor name without the base prefix)]`` and the ignored HF
    prefixes. ``layer_name`` is HF's module path of layer i (a format string)."""
    prefix, heads, ignored = _family_entry(cls, table)
    modules = {f"embeddings.{o}": f"embeddings.{h}" for o, h in _EMBEDDINGS.items()} | extra
    shared = getattr(config, "share", "none") == "all"  # ALBERT: one HF layer serves all
    for i in range(config.n_layers):
        hf_layer = layer_name.format(i=i, group=0 if shared else i)
        modules |= {f"encoder.layers.{i}.{o}": f"{hf_layer}.{h}" for o, h in layer.items()}
    pairs = [(prefix + o + s, h + s) for o, h in modules.items() for s in (".weight", ".bias")]
    pairs += [(o + s, h + s) for o, h in heads.items() for s in (".weight", ".bias")]
    if "mlm.decoder" in heads:  # tied: the decoder's weight is the token embedding matrix
        pairs.append(("mlm.decoder.weight", "embeddings.word_embeddings.weight"))
    return pairs, _ALWAYS_IGNORED + ignored


def _bert_pairs(cls, config) -> tuple:
    extra = {"pooler.dense": "pooler.dense"}
    return _weight_pairs(cls, config, _BERT_CLASSES, "encoder.layer.{i}", _BERT_LAYER, extra)


def _albert_pairs(cls, config) -> tuple:
    extra = {"project": "encoder.embedding_hidden_mapping_in", "pooler.dense": "pooler"}
    layer_name = "encoder.albert_layer_groups.{group}.albert_layers.0"
    return _weight_pairs(cls, config, _ALBERT_CLASSES, layer_name, _ALBERT_LAYER, extra)


def _rename_from_hf(hf_state: dict, pairs: list, base_prefix: str, ignored: tuple) -> dict:
    """HF tensors under ptlearn names. HF tensors with no place in this model keep their HF names,
    so :func:`load_state_dict_strict` reports them as unexpected keys."""
    state = {}
    for key, tensor in hf_state.items():
        key = key.removeprefix(base_prefix)
        for old, new in _OLD_NAMES.items():
            key = key.replace(old, new)
        state[key] = tensor
    ours = {o: state[h] for o, h in pairs if h in state}
    used = {h for _, h in pairs}
    leftover = {k: t for k, t in state.items() if k not in used and not k.startswith(ignored)}
    return ours | leftover


def bert_weights_from_hf(cls, hf_state: dict, config) -> dict:
    pairs, ignored = _bert_pairs(cls, config)
    return _rename_from_hf(hf_state, pairs, "bert.", ignored)


def albert_weights_from_hf(cls, hf_state: dict, config) -> dict:
    pairs, ignored = _albert_pairs(cls, config)
    return _rename_from_hf(hf_state, pairs, "albert.", ignored)


def bert_config_to_hf(config) -> dict:
    """ptlearn BertConfig -> keyword arguments of ``transformers.BertConfig`` (eager attention)."""
    return dict(
        vocab_size=config.vocab_size,
        hidden_size=config.d_model,
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        intermediate_size=config.d_ff,
        max_position_embeddings=config.max_len,
        type_vocab_size=config.type_vocab_size,
        hidden_act=_ACT_TO_HF[config.activation],
        layer_norm_eps=config.norm_eps,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        pad_token_id=config.pad_id,
        num_labels=config.n_classes,
        attn_implementation="eager",  # sdpa would return no attention maps
    )


def bert_to_hf(model: nn.Module) -> nn.Module:
    """The HF ``transformers`` twin of a ptlearn BERT (same class name), holding its weights."""
    import transformers

    name = next(k.__name__ for k in type(model).__mro__ if k.__name__ in _BERT_CLASSES)
    hf_model = getattr(transformers, name)(
        transformers.BertConfig(**bert_config_to_hf(model.config))
    )
    hf_keys, ours = set(hf_model.state_dict()), model.state_dict()
    pairs, _ = _bert_pairs(type(model), model.config)
    state = {}
    for o, h in pairs:
        key = h if h in hf_keys else f"bert.{h}"
        if key in hf_keys and o in ours:
            state[key] = ours[o]
    missing, unexpected = hf_model.load_state_dict(state, strict=False)
    missing = [k for k in missing if ".decoder." not in k]  # tied to embeddings and bias: loaded
    if missing or unexpected:
        raise ValueError(f"to_hf could not fill {missing} (unexpected: {unexpected}).")
    return hf_model.eval()


FAMILIES["bert"] = (bert_config_from_hf, bert_weights_from_hf)
FAMILIES["albert"] = (albert_config_from_hf, albert_weights_from_hf)


# --------------------------------------------------------------------------------------------
# GPT-2 and ViT
# --------------------------------------------------------------------------------------------

# GPT-2 writes its linear layers as ``Conv1D``: y = x @ W + b with W of shape [in, out], the
# transpose of nn.Linear's [out, in]. Its attention packs q, k and v into one ``c_attn`` of shape
# [C, 3C], which ptlearn keeps as three projections. The LM head is tied to ``wte``.
_GPT2_NAMES = [  # (HF substring, ptlearn substring), applied in this order
    ("transformer.wte.", "embeddings.token."),
    ("transformer.wpe.", "embeddings.position."),
    ("transformer.ln_f.", "decoder.final_norm."),
    ("transformer.h.", "decoder.layers."),
    (".ln_1.", ".norm_attn."),
    (".attn.c_proj.", ".attn.out_proj."),
    (".ln_2.", ".norm_ffn."),
    (".mlp.c_fc.", ".ffn.fc_in."),
    (".mlp.c_proj.", ".ffn.fc_out."),
]
_GPT2_HF_DEFAULTS = dict(
    vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=None,
    activation_function="gelu_new", resid_pdrop=0.1, layer_norm_epsilon=1e-5,
)  # fmt: skip
# GPT-2 options that change the computation and that ptlearn's GPT does not have
_GPT2_SUPPORTED = dict(
    scale_attn_weights=True, scale_attn_by_inverse_layer_idx=False, add_cross_attention=False
)


def _rename(name: str, pairs: list) -> str:
    for old, new in pairs:
        name = name.replace(old, new)
    return name


def _check_model_type(hf: dict, model_type: str) -> None:
    if hf.get("model_type", model_type) != model_type:
        raise ValueError(
            f"The checkpoint is a {hf['model_type']!r} model, not {model_type!r}: "
            f"load it with the matching ptlearn class."
        )


def gpt2_config_from_hf(cls, hf: dict):
    from .models.gpt import GPTConfig

    _check_model_type(hf, "gpt2")
    hf = {**_GPT2_HF_DEFAULTS, **hf}
    for key, supported in _GPT2_SUPPORTED.items():
        if hf.get(key, supported) != supported:
            raise ValueError(
                f"HF config has {key}={hf[key]!r}; ptlearn supports only {supported!r}."
            )
    return GPTConfig(
        vocab_size=hf["vocab_size"],
        d_model=hf["n_embd"],
        n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        d_ff=hf["n_inner"] or 4 * hf["n_embd"],
        max_len=hf["n_positions"],
        dropout=hf["resid_pdrop"],
        activation=activation_from_hf(hf["activation_function"]),
        norm_eps=hf["layer_norm_epsilon"],
    )


def gpt2_weights_from_hf(cls, hf_state: dict, config) -> dict:
    """GPT-2 tensors under ptlearn names: Conv1D weights transposed, ``c_attn`` split in three."""
    state = {}
    for name, tensor in hf_state.items():
        if not name.startswith(("transformer.", "lm_head.")):
            name = "transformer." + name  # GPT2Model and the original hub files have no prefix
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # tied to wte; causal-mask buffers of old checkpoints
        if name.startswith("transformer.h.") and tensor.dim() == 2:
            tensor = tensor.t()  # Conv1D [in, out] -> nn.Linear [out, in]
        name = _rename(name, _GPT2_NAMES)
        if ".attn.c_attn." in name:  # rows [0, C) are q, [C, 2C) k, [2C, 3C) v
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                state[name.replace("c_attn", proj)] = part
        else:
            state[name] = tensor
    if "embeddings.token.weight" in state:
        state["lm_head.weight"] = state["embeddings.token.weight"]  # tied
    return state


def gpt2_config_to_hf(config) -> dict:
    """ptlearn GPTConfig -> keyword arguments of ``transformers.GPT2Config`` (eager attention)."""
    return dict(
        vocab_size=config.vocab_size,
        n_positions=config.max_len,
        n_embd=config.d_model,
        n_layer=config.n_layers,
        n_head=config.n_heads,
        n_inner=config.d_ff,
        activation_function=_ACT_TO_HF[config.activation],
        layer_norm_epsilon=config.norm_eps,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=None,  # GPT-2's 50256 would lie outside a small vocabulary
        eos_token_id=None,
        attn_implementation="eager",  # sdpa would return no attention maps
    )


def gpt2_to_hf(model: nn.Module) -> nn.Module:
    """An HF ``transformers.GPT2LMHeadModel`` holding a ptlearn GPT's weights."""
    import transformers

    hf_model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(**gpt2_config_to_hf(model.config))
    )
    ours, state = model.state_dict(), {}
    inverse = [(new, old) for old, new in reversed(_GPT2_NAMES)]
    for name, tensor in ours.items():
        if ".attn.k_proj." in name or ".attn.v_proj." in name:
            continue  # packed together with q_proj below
        if ".attn.q_proj." in name:
            qkv = [ours[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            tensor = torch.cat(qkv)  # [3C, C] or [3C]
            name = name.replace("q_proj", "c_attn")
        name = _rename(name, inverse)
        if name.startswith("transformer.h.") and tensor.dim() == 2:
            tensor = tensor.t()  # nn.Linear [out, in] -> Conv1D [in, out]
        state[name] = tensor
    hf_model.load_state_dict(state, strict=True)
    return hf_model.eval()


# HF ViT in memory (transformers >= 5) names layer i ``layers.{i}`` with q/k/v/o_proj and
# mlp.fc1/fc2; files on disk (and transformers 4) use the older names, normalised first.
_VIT_LEGACY_NAMES = [
    ("encoder.layer.", "layers."),
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]
_VIT_NAMES = [  # (HF substring, ptlearn substring), applied in this order
    ("embeddings.patch_embeddings.projection.", "embeddings.proj."),
    ("embeddings.position_embeddings", "embeddings.position"),
    ("layers.", "encoder.layers."),
    (".attention.o_proj.", ".attn.out_proj."),
    (".attention.", ".attn."),  # q_proj, k_proj, v_proj keep their names
    (".layernorm_before.", ".norm_attn."),
    (".layernorm_after.", ".norm_ffn."),
    (".mlp.fc1.", ".ffn.fc_in."),
    (".mlp.fc2.", ".ffn.fc_out."),
    ("layernorm.", "norm."),  # the final LayerNorm
]
_VIT_HF_DEFAULTS = dict(
    hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    hidden_act="gelu", hidden_dropout_prob=0.0, layer_norm_eps=1e-12, image_size=224,
    patch_size=16, num_channels=3, qkv_bias=True,
)  # fmt: skip


def _square(value, name: str) -> int:
    """HF allows (height, width) pairs; ptlearn's ViT takes square images and patches."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"HF config has {name}={value}; ptlearn's ViT supports squares only.")
        value = value[0]
    return value


def vit_config_from_hf(cls, hf: dict):
    from .models.vit import ViTConfig

    _check_model_type(hf, "vit")
    hf = {**_VIT_HF_DEFAULTS, **hf}
    if not hf["qkv_bias"]:
        raise ValueError("HF config has qkv_bias=False; ptlearn's attention always has biases.")
    return ViTConfig(
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        dropout=hf["hidden_dropout_prob"],
        activation=activation_from_hf(hf["hidden_act"]),
        norm_eps=hf["layer_norm_eps"],
        image_size=_square(hf["image_size"], "image_size"),
        patch_size=_square(hf["patch_size"], "patch_size"),
        n_channels=hf["num_channels"],
        n_classes=len(hf.get("id2label") or {}) or hf.get("num_labels", 2),
    )


def vit_weights_from_hf(cls, hf_state: dict, config) -> dict:
    """HF ViT tensors under ptlearn names. HF's optional pooler (dense + tanh on [CLS], which its
    own classifier does not use) has no ptlearn counterpart and is skipped, and so is the
    classifier head when loading into a bare ``ViTModel``."""
    from .models.vit import ViTModel

    backbone = "" if issubclass(cls, ViTModel) else "vit."
    state = {}
    for name, tensor in hf_state.items():
        name = _rename(_rename(name.removeprefix("vit."), _VIT_LEGACY_NAMES), _VIT_NAMES)
        if name.startswith("pooler.") or (not backbone and name.startswith("classifier.")):
            continue
        state[name if name.startswith("classifier.") else backbone + name] = tensor
    return state


FAMILIES["gpt2"] = (gpt2_config_from_hf, gpt2_weights_from_hf)
FAMILIES["vit"] = (vit_config_from_hf, vit_weights_from_hf)
