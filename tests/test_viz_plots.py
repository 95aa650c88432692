"""Static plots, rollout and input checks of ptlearn.viz, checked through their data (no images)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ptlearn import viz  # noqa: E402
from ptlearn.viz.inputs import attention_maps  # noqa: E402
from ptlearn.viz.rollout import patch_grid  # noqa: E402

TOKENS = ["[CLS]", "the", "cat", "$5", "[SEP]"]


def make_attentions(n_layers=2, n_heads=3, t_q=5, t_k=None, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    t_k = t_k or t_q
    return tuple(
        torch.softmax(torch.randn(batch, n_heads, t_q, t_k, generator=g), dim=-1)
        for _ in range(n_layers)
    )


def test_plot_attention_shows_the_chosen_head_with_token_labels():
    att = make_attentions()
    fig = viz.plot_attention(att, TOKENS, layer=1, head=2)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), att[1][0, 2].numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["[CLS]", "the", "cat", r"\$5", "[SEP]"]
    assert ax.get_title() == "layer 1, head 2"
    assert "query" in ax.get_ylabel() and "key" in ax.get_xlabel()


def test_plot_attention_mean_head_batch_and_negative_layer():
    att = make_attentions(batch=2)
    fig = viz.plot_attention(att, TOKENS, layer=-1, head="mean", batch=1)
    np.testing.assert_allclose(
        fig.axes[0].images[0].get_array(), att[1][1].mean(0).numpy(), rtol=1e-6
    )


def test_plot_attention_cross_attention_uses_tokens_k():
    att = make_attentions(t_q=3, t_k=5)
    fig = viz.plot_attention(att, ["a", "b", "c"], tokens_k=TOKENS)
    ax = fig.axes[0]
    assert len(ax.get_xticklabels()) == 5 and len(ax.get_yticklabels()) == 3
    with pytest.raises(ValueError, match="tokens_k"):
        viz.plot_attention(att, ["a", "b", "c"])


def test_figures_show_in_a_notebook_without_pyplot():
    fig = viz.plot_attention(make_attentions(), TOKENS)  # IPython calls _repr_png_ for image/png
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_attention_draws_into_a_given_axes():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    assert viz.plot_attention(make_attentions(), TOKENS, ax=ax, colorbar=False) is ax.figure


@pytest.mark.parametrize(
    "attentions, tokens, kwargs, message",
    [
        (make_attentions(), TOKENS[:4], {}, "5 query positions but 4 tokens"),
        (make_attentions(), TOKENS, {"layer": 2}, "layer=2 is out of range"),
        (make_attentions(), TOKENS, {"head": 3}, "head=3 is out of range"),
        (make_attentions(), TOKENS, {"batch": 1}, "batch=1 is out of range"),
        (tuple(a[0] for a in make_attentions()), TOKENS, {}, "unsqueeze"),
        (make_attentions()[0], TOKENS, {}, "per-layer tuple"),
        ((), TOKENS, {}, "eager"),
    ],
)
def test_bad_inputs_raise_errors_that_name_the_fix(attentions, tokens, kwargs, message):
    with pytest.raises(ValueError, match=message):
        viz.plot_attention(attentions, tokens, **kwargs)


def test_attention_maps_accepts_hf_style_lists_and_numpy():
    att = make_attentions()
    maps = attention_maps([a.numpy() for a in att])
    assert maps.shape == (2, 3, 5, 5) and maps.dtype == np.float32


def test_plot_attention_grid_has_one_cell_per_layer_and_head():
    att = make_attentions(n_layers=2, n_heads=3)
    fig = viz.plot_attention_grid(att, TOKENS)
    assert len(fig.axes) == 6
    np.testing.assert_allclose(fig.axes[5].images[0].get_array(), att[1][0, 2].numpy())
    assert fig.axes[0].get_ylabel() == "layer 0" and fig.axes[2].get_title() == "head 2"


def test_plot_attention_arcs_line_opacity_is_the_weight():
    att = make_attentions()
    fig = viz.plot_attention_arcs(att, TOKENS, layer=0, head=1, query=2)
    lines = fig.axes[0].collections[0]
    row = att[0][0, 1, 2].numpy()
    expected = np.sort(row[row >= 0.01])
    np.testing.assert_allclose(np.sort(lines.get_colors()[:, 3]), expected, rtol=1e-6)
    assert all(seg[0][1] == pytest.approx(0.5) for seg in lines.get_segments())  # all from query 2


def hand_rollout(maps, residual=True):
    """Abnar & Zuidema written out for a [L, H, T, T] array."""
    result = np.eye(maps.shape[-1])
    for layer in maps:
        a = layer.mean(axis=0) + (np.eye(maps.shape[-1]) if residual else 0)
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    return result


def test_attention_rollout_matches_a_hand_computation():
    a1 = np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # [H=2, 2, 2]
    a2 = np.array([[[0.2, 0.8], [0.6, 0.4]], [[0.4, 0.6], [1.0, 0.0]]])
    att = (torch.tensor(a1)[None], torch.tensor(a2)[None])
    # layer 1: mean [[.5,.5],[.5,.5]] + I -> [[.75,.25],[.25,.75]]; layer 2: mean [[.3,.7],[.8,.2]]
    # + I -> [[.65,.35],[.4,.6]]; rollout = A2 @ A1
    expected = np.array([[0.65, 0.35], [0.4, 0.6]]) @ np.array([[0.75, 0.25], [0.25, 0.75]])
    np.testing.assert_allclose(viz.attention_rollout(att), expected, rtol=1e-6)
    np.testing.assert_allclose(viz.attention_rollout(att).sum(axis=-1), 1.0)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
def test_rollout_rows_sum_to_one_for_every_setting(fusion):
    att = make_attentions(n_layers=3, t_q=6)
    for residual in (True, False):
        r = viz.attention_rollout(att, head_fusion=fusion, add_residual=residual, discard_ratio=0.3)
        np.testing.assert_allclose(r.sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        viz.attention_rollout(att, add_residual=False),
        hand_rollout(attention_maps(att), False),
        rtol=1e-5,
    )


def test_rollout_discard_zeroes_the_weakest_weights():
    att = (torch.tensor([[[[0.1, 0.9], [0.3, 0.7]]]]),)
    r = viz.attention_rollout(att, add_residual=False, discard_ratio=0.25)  # drops the 0.1
    np.testing.assert_allclose(r, [[0.0, 1.0], [0.3, 0.7]])
    with pytest.raises(ValueError, match="head_fusion"):
        viz.attention_rollout(att, head_fusion="median")


@pytest.mark.parametrize(
    "n_tokens, side, cls", [(17, 4, True), (16, 4, False), (50, 7, True), (49, 7, False)]
)
def test_patch_grid_with_and_without_class_token(n_tokens, side, cls):
    matrix = np.arange(n_tokens * n_tokens, dtype=float).reshape(n_tokens, n_tokens)
    grid = patch_grid(matrix)
    assert grid.shape == (side, side)
    expected = matrix[0, 1:] if cls else matrix.mean(axis=0)
    np.testing.assert_allclose(grid.ravel(), expected)


def test_plot_rollout_overlays_the_cls_row_on_the_image():
    att = make_attentions(n_layers=2, n_heads=2, t_q=17)
    image = torch.rand(3, 16, 16)
    fig = viz.plot_rollout(att, image=image, patch_size=4)
    overlay = fig.axes[0].images[1].get_array()
    np.testing.assert_allclose(overlay, viz.attention_rollout(att)[0, 1:].reshape(4, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="patch"):
        viz.plot_rollout(att, image=image, patch_size=5)
    with pytest.raises(ValueError, match="square grid"):
        viz.plot_rollout(make_attentions(t_q=7), image=image)


def test_plot_rollout_over_text_tokens():
    att = make_attentions()
    fig = viz.plot_rollout(att, tokens=TOKENS)
    heights = [bar.get_height() for bar in fig.axes[0].patches]
    np.testing.assert_allclose(heights, viz.attention_rollout(att)[0], rtol=1e-6)


def test_plot_history_train_eval_and_metrics():
    records = [
        {"step": 1, "split": "train", "loss": 3.0, "lr": 1e-3},
        {"step": 2, "split": "train", "loss": 2.0, "lr": 1e-3},
        {"step": 2, "split": "eval", "loss": 2.5, "accuracy": 0.4},
        {"step": 4, "split": "train", "loss": 1.0, "lr": 1e-3},
        {"step": 4, "split": "eval", "loss": 1.5, "accuracy": 0.7},
    ]

    class History:
        pass

    history = History()
    history.records = records
    for source in (history, records):
        fig = viz.plot_history(source)
        loss_ax, metric_ax = fig.axes
        (train, evaluation) = loss_ax.get_lines()
        assert list(train.get_xdata()) == [1, 2, 4] and list(train.get_ydata()) == [3.0, 2.0, 1.0]
        assert list(evaluation.get_ydata()) == [2.5, 1.5]
        assert [line.get_label() for line in metric_ax.get_lines()] == ["accuracy"]
        assert loss_ax.get_xlabel() == "step"
    with pytest.raises(ValueError, match="no records"):
        viz.plot_history([])


def test_positional_encoding_and_position_similarity():
    from ptlearn import sinusoidal_encoding

    pe = sinusoidal_encoding(32, 16)
    fig = viz.plot_positional_encoding(pe)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), pe.numpy())
    assert fig.axes[0].get_xlabel() == "embedding dimension"
    sim = viz.plot_position_similarity(torch.nn.Embedding(10, 8)).axes[0].images[0].get_array()
    assert sim.shape == (10, 10)
    np.testing.assert_allclose(np.diag(sim), 1.0, rtol=1e-5)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)


def test_save_figure_png_svg_and_bad_suffix(tmp_path):
    fig = viz.plot_attention(make_attentions(), TOKENS)
    png = viz.save_figure(fig, tmp_path / "a" / "attn.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in viz.save_figure(fig, tmp_path / "attn.svg").read_bytes()[:400]
    with pytest.raises(ValueError, match=".png or .svg"):
        viz.save_figure(fig, tmp_path / "attn.pdf")
    assert sorted(p.name for p in tmp_path.rglob("*")) == [
        "a",
        "attn.png",
        "attn.svg",
    ]  # no temp files
