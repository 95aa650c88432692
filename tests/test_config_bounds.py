"""Configs read from files are checked for type and plausible size before any layer is built."""

from __future__ import annotations

import json

import pytest

from ptlearn import GPT, BertConfig, BertModel, GPTConfig
from ptlearn.config import MAX_PARAMETERS, planned_parameters


def _save_tiny_bert(tmp_path, **overrides):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=20,
    )
    transformers.BertModel(hf_config).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    config = json.loads(path.read_text())
    config.update(overrides)
    path.write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("layers", [10**9, 10**4])
def test_absurd_layer_count_fails_before_any_layer_is_built(tmp_path, monkeypatch, layers):
    folder = _save_tiny_bert(tmp_path, num_hidden_layers=layers)
    built = []
    monkeypatch.setattr(BertModel, "__init__", lambda self, *a, **k: built.append(1))
    with pytest.raises(ValueError, match=str(tmp_path)) as err:
        BertModel.from_pretrained(folder)
    assert f"n_layers={layers}" in str(err.value)
    assert not built, "the model was constructed before the size check"


def test_wrong_type_in_config_names_the_file_and_field(tmp_path):
    folder = _save_tiny_bert(tmp_path, num_hidden_layers="six")
    with pytest.raises(TypeError, match=r"n_layers must be an int") as err:
        BertModel.from_pretrained(folder)
    assert str(tmp_path) in str(err.value)


def test_missing_field_names_the_file(tmp_path):
    folder = _save_tiny_bert(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["hidden_size"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"no field 'hidden_size'"):
        BertModel.from_pretrained(folder)


def test_a_correct_config_still_loads(tmp_path):
    model = BertModel.from_pretrained(_save_tiny_bert(tmp_path))
    assert model.config.n_layers == 2


def test_planned_parameters_match_real_models_closely():
    for config in (GPTConfig(), GPTConfig(d_model=96, n_layers=3, n_heads=4, d_ff=384)):
        real = sum(p.numel() for p in GPT(config).parameters())
        assert 0.8 * real <= planned_parameters(config) <= 1.2 * real
    real = sum(p.numel() for p in BertModel(BertConfig()).parameters())
    assert 0.8 * real <= planned_parameters(BertConfig()) <= 1.2 * real


def test_from_dict_refuses_absurd_sizes_naming_the_fields():
    fields = GPTConfig().to_dict() | {"n_layers": 10**9}
    with pytest.raises(ValueError, match=r"n_layers=1000000000"):
        GPTConfig.from_dict(fields)
    assert planned_parameters(GPTConfig.from_dict(GPTConfig().to_dict())) < MAX_PARAMETERS
