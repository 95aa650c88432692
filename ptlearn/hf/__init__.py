"""Weights in and out of HF ``transformers``: ``from_hf``, ``to_hf`` and ``from_pretrained``.

A checkpoint is just named tensors. Converting one means (1) reading the HF config into ours and
(2) renaming — sometimes transposing or splitting — each tensor into our module layout. Both steps
are plain functions per model family, so a reader can see exactly which HF tensor becomes which
ptlearn parameter:

- :mod:`ptlearn.hf.io`: read ``config.json`` + safetensors from a directory or the hub;
- :mod:`ptlearn.hf.convertible`: the ``HFConvertible`` mix-in and the helpers all families use;
- :mod:`ptlearn.hf.bert` (BERT, ALBERT), :mod:`ptlearn.hf.gpt2`, :mod:`ptlearn.hf.vit`.

Direction of imports: ``ptlearn.models`` imports ``ptlearn.hf``, never the reverse. Each model
class names its ``config_class`` and its ``hf_converter`` (an object of this package), so this
package knows no model and nothing is looked up by a string or a class name.
``import ptlearn.hf`` does not import ``transformers``.
"""

from .bert import albert_layer_names, bert_config_to_hf, bert_layer_names, bert_to_hf
from .convertible import HFConvertible, activation_from_hf, load_state_dict_strict
from .gpt2 import gpt2_config_from_hf, gpt2_config_to_hf, gpt2_to_hf, gpt2_weights_from_hf
from .io import read_hf_checkpoint, resolve_pretrained_dir
from .vit import vit_config_from_hf

__all__ = [
    "HFConvertible",
    "activation_from_hf",
    "albert_layer_names",
    "bert_config_to_hf",
    "bert_layer_names",
    "bert_to_hf",
    "gpt2_config_from_hf",
    "gpt2_config_to_hf",
    "gpt2_to_hf",
    "gpt2_weights_from_hf",
    "load_state_dict_strict",
    "read_hf_checkpoint",
    "resolve_pretrained_dir",
    "vit_config_from_hf",
]
