"""Widgets of ptlearn.viz, headless: build each, move its controls, check the data it shows."""

import matplotlib

matplotlib.use("Agg")

import re  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from ptlearn import ModelOutput, viz  # noqa: E402
from ptlearn.objectives import random_patch_mask  # noqa: E402
from ptlearn.viz.rollout import patch_grid  # noqa: E402

TOKENS = ["[CLS]", "the", "cat", "sat", "[SEP]"]
PNG = b"\x89PNG"


def make_attentions(n_layers=2, n_heads=3, t=5, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.softmax(torch.randn(batch, n_heads, t, t, generator=g), -1) for _ in range(n_layers)
    )


class WordTokenizer:
    """The tokenizer protocol of ptlearn (CONTRACT.md) over a ten-word vocabulary."""

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "."]
    pad_id, unk_id, cls_id, sep_id, mask_id, bos_id, eos_id = 0, 1, 2, 3, 4, None, None
    special_ids = {0, 1, 2, 3, 4}
    vocab_size = len(vocab)

    def token_to_id(self, token):
        return self.vocab.index(token) if token in self.vocab else None

    def encode(self, text):
        return [
            self.token_to_id(w) or self.unk_id for w in re.findall(r"\w+|[^\w\s]", text.lower())
        ]

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]

    def decode(self, ids):
        return "".join(" " + self.vocab[i] for i in ids)


class FakeMLM(nn.Module):
    """Always guesses "cat" (logit 3), then "mat" (2); attention depends on position only."""

    def __init__(self, n_layers=2, n_heads=2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(WordTokenizer.vocab_size))
        self.n_layers, self.n_heads = n_layers, n_heads

    def forward(self, input_ids, output_attentions=False, **kwargs):
        B, T = input_ids.shape
        logits = self.bias.detach().clone()
        logits[6], logits[9] = 3.0, 2.0
        scores = torch.arange(T * T, dtype=torch.float).reshape(T, T) / T
        self.attentions = tuple(
            torch.cat(
                [
                    torch.softmax(scores * (l + 1) * (h + 1) / 4, -1)[None]
                    for h in range(self.n_heads)
                ]
            )[None]
            for l in range(self.n_layers)
        )
        return ModelOutput(logits=logits.expand(B, T, -1), attentions=self.attentions)


class FakeLM(nn.Module):
    """Causal LM whose favourite next token is (last id + 1) mod vocab."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, input_ids, **kwargs):
        nxt = (input_ids + 1) % WordTokenizer.vocab_size  # [B, T]
        return ModelOutput(
            logits=self.scale * nn.functional.one_hot(nxt, WordTokenizer.vocab_size).float()
        )


def test_attention_explorer_follows_its_controls():
    att = make_attentions()
    box = viz.attention_explorer(att, TOKENS)
    np.testing.assert_allclose(box.current["heatmap"], att[0][0, 0].numpy())
    first_png = bytes(box.image.value)
    assert first_png.startswith(PNG)
    box.controls["layer"].value = 1
    box.controls["head"].value = 2
    np.testing.assert_allclose(box.current["heatmap"], att[1][0, 2].numpy())
    assert bytes(box.image.value) != first_png
    box.controls["head"].value = "mean"
    np.testing.assert_allclose(box.current["heatmap"], att[1][0].mean(0).numpy(), rtol=1e-6)
    box.controls["query"].value = 3
    arcs = box.current["arcs"]
    np.testing.assert_allclose(arcs[3], att[1][0].mean(0)[3].numpy(), rtol=1e-6)
    assert not arcs[[0, 1, 2, 4]].any()


def test_widget_shows_its_static_png_as_an_output_of_its_own(monkeypatch):
    """VS Code (ipywidgets 8.1.9), GitHub and nbviewer show the picture even without the widget."""
    import base64

    from ptlearn.viz import widgets as widgets_mod

    shown, updates = [], []

    class Handle:
        def update(self, obj, raw=False):
            updates.append(obj)

    def fake_display(obj, raw=False, display_id=None):
        shown.append(obj)
        return Handle() if display_id else None

    monkeypatch.setattr(widgets_mod, "display", fake_display)
    box = viz.attention_explorer(make_attentions(), TOKENS)
    box._ipython_display_()  # what IPython calls to display the box (ipywidgets 7 and 8)
    assert len(shown) == 2, "the widget, then its picture as a separate output"
    widget, static = shown
    assert widget["application/vnd.jupyter.widget-view+json"]["model_id"] == box.model_id
    assert "image/png" not in widget  # the picture lives in its own output
    assert set(static) == {"image/png", "text/plain"}
    assert base64.b64decode(static["image/png"]) == bytes(box.image.value)
    box.controls["layer"].value = 1  # the static picture follows the live view
    assert updates and base64.b64decode(updates[-1]["image/png"]) == bytes(box.image.value)


def test_attention_replay_moves_through_snapshots():
    snapshots = [
        (0, make_attentions(seed=1)),
        (50, make_attentions(seed=2)),
        (100, make_attentions(seed=3)),
    ]
    box = viz.attention_replay(snapshots, TOKENS, layer=1, head=1)
    assert box.current["step"] == 0
    box.controls["snapshot"].value = 2
    assert box.current["step"] == 100
    np.testing.assert_allclose(box.current["heatmap"], snapshots[2][1][1][0, 1].numpy())
    with pytest.raises(ValueError, match="AttentionRecorder"):
        viz.attention_replay([], TOKENS)


def test_rollout_explorer_text_toggles():
    att = make_attentions(n_layers=3)
    box = viz.rollout_explorer(att, tokens=TOKENS)
    np.testing.assert_allclose(box.current["rollout"], viz.attention_rollout(att))
    box.controls["add_residual"].value = False
    box.controls["head_fusion"].value = "max"
    box.controls["discard_ratio"].value = 0.2
    expected = viz.attention_rollout(att, head_fusion="max", add_residual=False, discard_ratio=0.2)
    np.testing.assert_allclose(box.current["rollout"], expected)
    box.controls["query"].value = 2
    np.testing.assert_allclose(box.current["shown"], expected[2])


def test_rollout_explorer_on_image_patches():
    att = make_attentions(n_layers=2, t=17)
    box = viz.rollout_explorer(att, image=torch.rand(3, 16, 16), patch_size=4)
    np.testing.assert_allclose(
        box.current["shown"], viz.attention_rollout(att)[0, 1:].reshape(4, 4)
    )


def test_vit_explorer_image_layer_head_and_rollout():
    att = make_attentions(n_layers=2, n_heads=2, t=17, batch=3)
    images = torch.rand(3, 3, 16, 16)
    box = viz.vit_explorer(images, att, patch_size=4, layer=0, head=1)
    np.testing.assert_allclose(box.current["overlay"], att[0][0, 1, 0, 1:].reshape(4, 4).numpy())
    box.controls["image"].value = 2
    np.testing.assert_allclose(box.current["overlay"], att[0][2, 1, 0, 1:].reshape(4, 4).numpy())
    box.controls["mode"].value = "rollout"
    np.testing.assert_allclose(
        box.current["overlay"], patch_grid(viz.attention_rollout(att, batch=2))
    )
    calls = []
    per_image = viz.vit_explorer(
        list(images), lambda i: calls.append(i) or tuple(a[i : i + 1] for a in att)
    )
    per_image.controls["image"].value = 1
    per_image.controls["image"].value = 0
    assert calls == [0, 1]  # computed lazily, once per image


def test_patch_masking_view_follows_the_mae_rule():
    box = viz.patch_masking_view(torch.rand(1, 16, 16), patch_size=4, mask_ratio=0.75, seed=3)
    assert box.current["n_keep"] == 4
    keep_idx, _ = random_patch_mask(1, 16, 0.75, torch.Generator().manual_seed(3))  # ViTMAE's rule
    assert np.flatnonzero(box.current["keep"]).tolist() == keep_idx[0].tolist()
    box.controls["mask_ratio"].value = 0.5
    assert box.current["n_keep"] == 8
    before = box.current["keep"].copy()
    box.controls["seed"].value = 4
    assert box.current["n_keep"] == 8 and not np.array_equal(before, box.current["keep"])
    assert viz.mae_keep_mask(196, 0.75).sum() == int(196 * 0.25)
    with pytest.raises(ValueError, match="does not divide"):
        viz.patch_masking_view(torch.rand(1, 15, 15), patch_size=4)


def test_parameter_breakdown_matches_hf_bert_base_and_albert_base():
    bert = viz.parameter_breakdown(vocab_size=30522, d_model=768, n_layers=12)["bert"]
    albert = viz.parameter_breakdown(vocab_size=30000, d_embed=128, d_model=768, n_layers=12)[
        "albert"
    ]
    assert sum(bert.values()) == 109_482_240  # BertModel (bert-base-uncased) with pooler
    assert sum(albert.values()) == 11_683_584  # AlbertModel (albert-base-v2)
    none = viz.parameter_breakdown(share="none")["albert"]
    assert none["attention"] == 12 * albert["attention"] and none["FFN"] == 12 * albert["FFN"]


def test_parameter_budget_widget_updates_totals():
    box = viz.parameter_budget()
    assert box.current["totals"]["albert"] == 11_683_584
    box.controls["share"].value = "ffn"
    parts = viz.parameter_breakdown(share="ffn")
    assert box.current["breakdown"] == parts
    box.controls["n_layers"].value = 24
    assert box.current["totals"]["bert"] == sum(
        viz.parameter_breakdown(n_layers=24, share="ffn")["bert"].values()
    )


def test_head_step_by_step_on_given_qkv():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 8, generator=g) for _ in range(3))
    box = viz.head_step_by_step(q, k, v, tokens=["a", "b", "c", "d"])
    cur = box.current
    np.testing.assert_allclose(cur["scaled"], (q @ k.T / 8**0.5).numpy(), rtol=1e-5)
    assert np.isfinite(cur["masked"]).all()
    box.controls["mode"].value = "causal"
    cur = box.current
    assert np.isinf(cur["masked"][np.triu_indices(4, 1)]).all()
    np.testing.assert_allclose(cur["row_sums"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(cur["weights"][np.triu_indices(4, 1)], 0.0)
    np.testing.assert_allclose(cur["output"], cur["weights"] @ v.numpy(), rtol=1e-5)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(cur["output"], reference.numpy(), rtol=1e-4, atol=1e-6)


def test_head_step_by_step_from_the_learners_sentence():
    box = viz.head_step_by_step(causal=True)
    assert box.current["tokens"] == "the cat sat on the mat".split()
    box.controls["text"].value = "attention is all you need"
    assert box.current["tokens"] == ["attention", "is", "all", "you", "need"]
    assert box.current["weights"].shape == (5, 5)


def test_softmax_temperature_demo_saturates_without_scaling():
    box = viz.softmax_temperature_demo(d_k=512)
    raw_max, raw_std = box.current["max_weight"], box.current["score_std"]
    assert raw_max > 0.9 and raw_std > 10
    box.controls["scale"].value = "divide by sqrt(d_k)"
    assert box.current["max_weight"] < 0.6 and box.current["score_std"] < 3
    np.testing.assert_allclose(box.current["weights"].sum(), 1.0, rtol=1e-6)


def test_fill_mask_playground_predictions_and_attention_row():
    model, tok = FakeMLM(), WordTokenizer()
    model.train()
    box = viz.fill_mask_playground(model, tok, text="the [MASK] sat", top_k=3, layer=0, head=0)
    assert model.training  # the playground restores the mode it found
    assert box.current["tokens"] == ["[CLS]", "the", "[MASK]", "sat", "[SEP]"]
    assert box.current["masks"] == [2]
    (preds,) = box.current["predictions"]
    probs = torch.softmax(torch.tensor([3.0, 2.0] + [0.0] * 9), 0)
    assert [p[0] for p in preds[:2]] == ["cat", "mat"]
    assert preds[0][1] == pytest.approx(float(probs[0]))
    box.controls["layer"].value = 1
    box.controls["head"].value = 1
    np.testing.assert_allclose(box.current["attention_row"], model.attentions[1][0, 1, 2].numpy())
    box.controls["text"].value = "[MASK] cat [MASK] on the mat"
    assert box.current["masks"] == [1, 3]
    assert box.current["mask"] == 1  # a new text shows its first [MASK] ...
    assert_menu_shows(box.controls["mask"], "#1 (position 1)", 0)  # ... and the menu says so
    box.controls["mask"].value = 1
    assert box.current["mask"] == 3
    np.testing.assert_allclose(box.current["attention_row"], model.attentions[1][0, 1, 3].numpy())


def assert_menu_shows(menu, label, value) -> None:
    """The drop-down has a selection (a browser shows ``label``), consistent with its value."""
    assert menu.index is not None, "the menu shows a blank selection"
    assert (menu.label, menu.value) == (label, value)
    assert menu.options[menu.index] == (label, value)


def test_fill_mask_playground_menu_selects_the_mask_it_shows():
    # ipywidgets 8 leaves a menu created without options blank when options arrive later
    model, tok = FakeMLM(), WordTokenizer()
    box = viz.fill_mask_playground(model, tok, text="the [MASK] sat", top_k=3)
    menu = box.controls["mask"]
    assert menu.options == (("#1 (position 2)", 0),)
    assert_menu_shows(menu, "#1 (position 2)", 0)
    assert box.current["mask"] == 2
    box.controls["text"].value = "[MASK] cat [MASK] on the mat"
    assert_menu_shows(menu, "#1 (position 1)", 0)
    menu.value = 1
    assert_menu_shows(menu, "#2 (position 3)", 1)
    assert box.current["mask"] == 3
    box.controls["text"].value = "the cat [MASK] on the [MASK]"  # same count: back to the first
    assert_menu_shows(menu, "#1 (position 3)", 0)
    assert box.current["mask"] == 3
    box.controls["text"].value = "the cat sat"  # no [MASK]: an empty menu, nothing shown
    assert menu.options == () and menu.index is None
    assert box.current["masks"] == [] and box.current["mask"] is None
    box.controls["text"].value = "the [MASK] sat"  # and back
    assert_menu_shows(menu, "#1 (position 2)", 0)
    assert box.current["mask"] == 2


def test_generation_playground_labels_are_not_clipped():
    box = viz.generation_playground(FakeLM(), WordTokenizer(), prompt="the", max_new_tokens=4)
    for name, control in box.controls.items():
        if name != "generate":
            assert control.style.description_width == "initial", name
    fig = box.figure
    fig.canvas.draw()
    inside = fig.bbox
    for artist in [*box.figure.axes[0].get_xticklabels(), box.figure.axes[0].yaxis.label]:
        extent = artist.get_window_extent()
        assert extent.y0 >= inside.y0 - 1 and extent.x0 >= inside.x0 - 1, artist


def test_generation_playground_greedy_colours_and_reproducible_sampling():
    model, tok = FakeLM(), WordTokenizer()
    box = viz.generation_playground(model, tok, prompt="the", max_new_tokens=4, top_k=1)
    assert box.current["text"] == " cat sat on mat"
    assert all(step["prob"] == 1.0 for step in box.current["steps"])
    assert box.current["html"].count("<span title=") == 4 and "hsl(120" in box.current["html"]
    assert "http" not in box.current["html"]
    box.controls["top_k"].value = 0
    box.controls["temperature"].value = 2.0
    box.controls["length"].value = 12
    box.controls["generate"].click()
    sampled = box.current["text"]
    box.controls["generate"].click()
    assert box.current["text"] == sampled  # same seed, same sample
    box.controls["seed"].value = 7
    box.controls["generate"].click()
    assert box.current["text"] != sampled
    assert len(box.current["steps"][0]["candidates"]) == 5


def test_sample_steps_slides_a_window_of_max_len_tokens():
    """Past the context the window keeps the last max_len tokens, all of them: training windows
    are max_len + 1 tokens long, so the last position's prediction is trained too."""
    from ptlearn import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_len=6))
    seen = []
    model.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["input_ids"][0].tolist()), with_kwargs=True
    )
    steps = viz.sample_steps(model, [3, 4], max_new_tokens=8, seed=0)
    text = [3, 4] + [s["id"] for s in steps]
    assert [len(ids) for ids in seen] == [2, 3, 4, 5, 6, 6, 6, 6]
    assert all(ids == text[: 2 + i][-6:] for i, ids in enumerate(seen))  # the newest tokens


def test_live_monitor_collects_and_redraws():
    monitor = viz.LiveMonitor(every=2, min_interval=0.0)
    for step in range(1, 7):
        monitor.on_step_end(None, step, {"loss": 3.0 / step, "lr": 1e-3})
    monitor.on_eval_end(None, 6, {"loss": 1.0, "accuracy": 0.5})
    monitor.on_train_end(None)
    cur = monitor.widget.current
    assert cur["train"] == ([1, 2, 3, 4, 5, 6], [3.0 / s for s in range(1, 7)])
    assert cur["eval"] == ([6], [1.0]) and cur["metrics"] == {"accuracy": ([6], [0.5])}
    line = monitor.ax_loss.get_lines()[0]
    assert list(line.get_ydata()) == cur["train"][1]
    assert bytes(monitor.widget.image.value).startswith(PNG)
    monitor.on_train_begin(None)  # outside a notebook: shows nothing, raises nothing


@pytest.mark.parametrize("share", ["all", "attention", "ffn", "none"])
def test_parameter_breakdown_matches_ptlearn_models(share):
    from ptlearn.models import AlbertConfig, AlbertModel, BertConfig, BertModel

    cfg = AlbertConfig(share=share)
    counts = viz.parameter_breakdown(
        cfg.vocab_size,
        cfg.d_embed,
        cfg.d_model,
        cfg.n_layers,
        cfg.d_ff,
        share,
        cfg.max_len,
        cfg.type_vocab_size,
    )
    assert sum(counts["albert"].values()) == sum(p.numel() for p in AlbertModel(cfg).parameters())
    bert = BertConfig(
        vocab_size=cfg.vocab_size,
        d_model=cfg.d_model,
        n_layers=cfg.n_layers,
        d_ff=cfg.d_ff,
        max_len=cfg.max_len,
    )
    assert sum(counts["bert"].values()) == sum(p.numel() for p in BertModel(bert).parameters())


def test_playgrounds_and_vit_explorer_on_real_ptlearn_models():
    from ptlearn import CharTokenizer
    from ptlearn.models import GPT, BertConfig, BertForPreTraining, GPTConfig, ViTConfig, ViTModel

    tok = CharTokenizer(
        "the cat sat on the mat.", special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    bert = BertForPreTraining(BertConfig(vocab_size=tok.vocab_size))
    box = viz.fill_mask_playground(bert, tok, "the c[MASK]t", layer=1, head=2)
    assert box.current["tokens"] == ["[CLS]", "t", "h", "e", " ", "c", "[MASK]", "t", "[SEP]"]
    with torch.no_grad():
        ids = torch.tensor(
            [
                tok.convert_ids_to_tokens(range(tok.vocab_size)).index(t)
                for t in box.current["tokens"]
            ]
        )
        out = bert.eval()(input_ids=ids[None], output_attentions=True)
    np.testing.assert_allclose(
        box.current["attention_row"], out.attentions[1][0, 2, 6].numpy(), rtol=1e-5
    )
    best = out.logits[0, 6].softmax(-1).max()
    assert box.current["predictions"][0][0][1] == pytest.approx(float(best), rel=1e-5)

    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size))
    gen = viz.generation_playground(gpt, tok, prompt="the ", max_new_tokens=6, top_k=1)
    greedy = gpt.generate(torch.tensor([tok.encode("the ")]), max_new_tokens=6, temperature=0)
    assert gen.current["text"] == tok.decode(greedy[0, 4:].tolist())

    cfg = ViTConfig()
    images = torch.rand(2, cfg.n_channels, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        attentions = ViTModel(cfg)(pixel_values=images, output_attentions=True).attentions
    vit = viz.vit_explorer(images, attentions, patch_size=cfg.patch_size, layer=0, head=0)
    vit.controls["image"].value = 1
    side = cfg.image_size // cfg.patch_size
    np.testing.assert_allclose(
        vit.current["overlay"], attentions[0][1, 0, 0, 1:].reshape(side, side).numpy()
    )


def test_live_monitor_and_attention_replay_in_a_trainer_run():
    from ptlearn import AttentionRecorder, TrainConfig, Trainer
    from ptlearn.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20))
    data = torch.arange(16)[None] % 20

    def batches(generator):
        return {"input_ids": data.repeat(2, 1), "labels": data.repeat(2, 1)}

    recorder, monitor = AttentionRecorder({"input_ids": data}, every=2), viz.LiveMonitor(every=2)
    config = TrainConfig(
        max_steps=4, log_every=2, eval_every=2, eval_batches=1, progress=False, device="cpu"
    )
    Trainer(model, config, batches, batches, callbacks=[recorder, monitor]).fit()
    assert monitor.widget.current["train"][0] == [1, 2, 3, 4]
    assert monitor.widget.current["eval"][0] == [2, 4]
    replay = viz.attention_replay(recorder.snapshots, [str(i) for i in range(16)])
    replay.controls["snapshot"].value = len(recorder.snapshots) - 1
    step, last = recorder.snapshots[-1]
    assert replay.current["step"] == step == 4
    np.testing.assert_allclose(replay.current["heatmap"], last[0][0, 0].numpy())
