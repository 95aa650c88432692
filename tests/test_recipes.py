"""Recipes: every (model, data) pair builds batches its model accepts, and trains; presets are
valid; fine-tuning starts from a pretraining run's encoder and tokenizer."""

import dataclasses

import pytest
import torch
from helpers_train import one_thread  # noqa: F401  (autouse fixture)

from ptlearn import recipes
from ptlearn.models import AlbertConfig, BertConfig, GPTConfig, ViTConfig
from ptlearn.recipes import build, build_finetune, save_run_files
from ptlearn.training import Trainer

CONFIGS = {"gpt": GPTConfig, "bert": BertConfig, "albert": AlbertConfig, "vit": ViTConfig}


def fit(recipe, steps: int, **overrides) -> Trainer:
    config = dataclasses.replace(
        recipe.config, max_steps=steps, time_budget=None, progress=False, **overrides
    )
    trainer = Trainer(
        recipe.model, config, recipe.train_data, recipe.eval_data,
        collate_fn=recipe.collate_fn, metrics=recipe.metrics,
    )  # fmt: skip
    trainer.fit()
    return trainer


@pytest.mark.parametrize("model", list(recipes.RECIPES))
def test_every_preset_is_a_valid_config_and_train_config(model):
    for name, preset in recipes.RECIPES[model].items():
        CONFIGS[model](**preset["model"])  # raises ValueError if the shape cannot work
        assert preset["batch_size"] > 0, name
        assert preset["train"]["time_budget"] > 0 and preset["train"]["max_steps"] is None


def test_the_cpu_gpt_recipe_is_the_time_to_quality_one():
    p = recipes.GPT_RECIPES["cpu"]
    assert p["model"]["max_len"] == 64 and p["model"].get("dropout", 0.0) == 0.0
    assert p["train"]["time_budget"] == 90 and p["train"]["eval_batches"] >= 40
    assert (
        p["train"]["muon_lr"] and recipes.GPT_RECIPES["cpu-adamw"]["train"].get("muon_lr") is None
    )
    gpu = recipes.GPT_RECIPES["gpu"]["model"]
    assert (gpu["n_layers"], gpu["d_model"], gpu["max_len"]) == (6, 384, 256)


def test_default_preset_follows_the_device():
    assert recipes.default_preset("cpu") == "cpu"
    assert recipes.default_preset("cuda") == "gpu"


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="tinyshakespeare, grammar"):
        build("gpt", "mnist", "tiny")
    with pytest.raises(ValueError, match="cpu, cpu-adamw, gpu, reference, tiny"):
        build("gpt", "grammar", "huge")
    with pytest.raises(ValueError, match="sst2, ag_news, grammar"):
        build_finetune("bert", "imdb", "tiny")


def test_gpt_char_recipe_validates_on_the_last_tenth(data_dir):
    recipe = build("gpt", "tinyshakespeare", "tiny")
    text = recipes.char_corpus("tinyshakespeare")
    cut = int(len(text) * 0.9)
    g = torch.Generator().manual_seed(0)
    train, val = recipe.train_data(g), recipe.eval_data(g)
    # windows of max_len + 1 characters: the inputs fill all 32 positions, each one has a target
    assert train["input_ids"].shape == (8, 32) and train["labels"].shape == (8, 33)
    assert torch.equal(train["labels"][:, :-1], train["input_ids"])
    for row in val["labels"]:
        window = recipe.tokenizer.decode(row)
        assert window in text[cut:]  # every validation window comes from the held-out tail
    assert recipe.tokenizer.vocab_size == recipe.model.config.vocab_size == 65


def test_gpt_recipe_learns_the_grammar_characters():
    recipe = build("gpt", "grammar", "tiny")
    trainer = fit(recipe, 120, lr=1e-2, warmup_steps=10)
    assert trainer.history.last("eval")["loss"] < 2.2  # uniform over the characters: ln 27 = 3.3


@pytest.mark.parametrize(("model", "pair_key"), [("bert", "next_sentence_label"), ("albert", "sentence_order_label")])  # fmt: skip
def test_pretraining_batches_are_masked_sentence_pairs(model, pair_key):
    recipe = build(model, "grammar", "tiny")
    tok = recipe.tokenizer
    batch = recipe.train_data(torch.Generator().manual_seed(0))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", pair_key}
    assert (batch["input_ids"][:, 0] == tok.cls_id).all()
    chosen = batch["labels"] != -100
    real = batch["attention_mask"].bool()
    assert 0.05 < chosen.sum() / real.sum() < 0.3  # about 15% of the tokens are to be predicted
    assert set(batch[pair_key].tolist()) <= {0, 1}
    assert torch.isfinite(recipe.model(**batch).loss)


def test_bert_recipe_trains_and_reports_mlm_and_nsp_accuracy():
    trainer = fit(build("bert", "grammar", "tiny"), 30)
    last = trainer.history.last("eval")
    assert {"loss", "mlm_accuracy", "nsp_accuracy"} <= set(last)
    first_loss = trainer.history.series("loss")[1][0]
    assert last["loss"] < first_loss


def test_vit_recipe_evaluates_on_the_digits_test_split():
    recipe = build("vit", "digits", "tiny")
    g = torch.Generator().manual_seed(0)
    assert recipe.train_data(g)["pixel_values"].shape == (32, 1, 8, 8)
    assert recipe.eval_data(g)["labels"].shape == (360,)  # the whole test split, in one batch
    trainer = fit(recipe, 150, lr=5e-3, warmup_steps=5)  # ViTs plateau for ~90 steps, then learn
    assert trainer.history.last("eval")["accuracy"] > 0.4  # chance: 0.1


def test_finetune_starts_from_the_pretrained_encoder_and_tokenizer(tmp_path):
    pretrain = build("bert", "grammar", "tiny")
    trainer = fit(pretrain, 2, out_dir=str(tmp_path))
    save_run_files(pretrain, tmp_path)
    recipe = build_finetune("bert", "grammar", "tiny", from_dir=str(tmp_path))
    pretrained = trainer.model.bert.state_dict()
    for name, tensor in recipe.model.bert.state_dict().items():
        torch.testing.assert_close(tensor, pretrained[name], rtol=0, atol=0)
    assert recipe.tokenizer.vocab_size == pretrain.tokenizer.vocab_size
    assert recipe.model.classifier.out_features == 2
    trainer = fit(recipe, 20)
    assert "accuracy" in trainer.history.last("eval")


def test_finetune_refuses_a_checkpoint_of_the_other_model(tmp_path):
    pretrain = build("bert", "grammar", "tiny")
    fit(pretrain, 2, out_dir=str(tmp_path))
    save_run_files(pretrain, tmp_path)
    with pytest.raises(ValueError, match="needs the output of `ptlearn train albert`"):
        build_finetune("albert", "grammar", "tiny", from_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        build_finetune("bert", "grammar", "tiny", from_dir=str(tmp_path / "nowhere"))


def test_finetune_on_real_text_pads_batches_with_the_tokenizer(data_dir):
    recipe = build_finetune("bert", "ag_news", "tiny")
    assert len(recipe.train_data) == 6000 and recipe.eval_data()["labels"].shape == (800,)
    batch = recipe.collate_fn([recipe.train_data[i] for i in range(4)])
    assert batch["input_ids"].shape[1] <= recipe.model.config.max_len
    assert recipe.model(**batch).logits.shape == (4, 4)


def test_image_batches_shift_each_digit_by_at_most_max_shift():
    from ptlearn.recipes import random_image_batch

    pixels = torch.zeros(4, 1, 8, 8)
    pixels[:, :, 3:5, 3:5] = 1.0  # a 2x2 blob in the middle of every image
    labels = torch.arange(4)
    g = torch.Generator().manual_seed(0)
    plain = random_image_batch(pixels, labels, 64, g)
    assert torch.equal(plain["pixel_values"], pixels[plain["labels"]])
    shifted = random_image_batch(pixels, labels, 64, g, max_shift=1)[
        "pixel_values"
    ]  # [64, 1, 8, 8]
    assert shifted.shape == (64, 1, 8, 8) and torch.all(
        shifted.sum((1, 2, 3)) == 4
    )  # moved, not cut
    rows = shifted.sum((1, 3)).argmax(-1)  # the first row the blob covers, per image
    assert set(rows.tolist()) == {2, 3, 4}  # shifted up, not at all, or down by one pixel
