"""Offline HTML export of the attention view: the data dict, the page, and its self-containment."""

import json
import re

import pytest
import torch

from ptlearn import viz
from ptlearn.viz.export import static_text

TOKENS = ["[CLS]", "a</script><b>", "caf\u00e9", "&amp;", "[SEP]"]


def make_attentions(n_layers=2, n_heads=3, t_q=5, t_k=None):
    g = torch.Generator().manual_seed(0)
    return tuple(
        torch.softmax(torch.randn(1, n_heads, t_q, t_k or t_q, generator=g), -1)
        for _ in range(n_layers)
    )


def embedded_params(page: str) -> dict:
    """The JSON argument the page's script was called with."""
    match = re.search(r"\}\)\((\{.*\})\);\s*</script>", page, re.S)
    assert match, "no inline call with a JSON payload found"
    return json.loads(match.group(1))


def test_attention_view_data_is_json_and_rounded():
    att = make_attentions()
    data = viz.attention_view_data(att, TOKENS, decimals=3, title="demo")
    assert json.loads(json.dumps(data)) == data
    assert (data["n_layers"], data["n_heads"], data["title"]) == (2, 3, "demo")
    assert data["tokens"] == data["tokens_k"] == TOKENS
    weights = torch.tensor(data["attention"], dtype=torch.float64)
    assert weights.shape == (2, 3, 5, 5)
    torch.testing.assert_close(
        weights, torch.stack([a[0] for a in att]).double(), atol=5e-4, rtol=0
    )
    assert all(len(repr(w).split(".")[-1]) <= 3 for w in data["attention"][1][2][3])


def test_attention_view_data_cross_attention():
    data = viz.attention_view_data(make_attentions(t_q=2, t_k=5), ["x", "y"], tokens_k=TOKENS)
    assert data["tokens"] == ["x", "y"] and data["tokens_k"] == TOKENS
    with pytest.raises(ValueError, match="tokens_k"):
        viz.attention_view_data(make_attentions(t_q=2, t_k=5), ["x", "y"])


def test_export_html_is_one_self_contained_page(tmp_path):
    att = make_attentions()
    path = viz.export_html(att, TOKENS, tmp_path / "view.html", title="my view")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # only the SVG namespace name
    assert (
        page.count("<script>") == 1 and "</script><b>" not in page
    )  # tokens cannot end the script
    params = embedded_params(page)
    assert params["data"] == viz.attention_view_data(att, TOKENS, title="my view")
    assert f'<div id="{params["root_id"]}"' in page
    for token in TOKENS:  # every token reaches the page (as JSON text, inserted as text nodes)
        assert (
            json.dumps(token)
            .strip('"')
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            in page
        )


def test_each_render_gets_a_unique_element_id(tmp_path):
    att = make_attentions()
    first = embedded_params(viz.export_html(att, TOKENS, tmp_path / "a.html").read_text())[
        "root_id"
    ]
    second = embedded_params(viz.export_html(att, TOKENS, tmp_path / "b.html").read_text())[
        "root_id"
    ]
    assert first != second and first.startswith("ptlearn-attention-")


def test_script_ships_with_the_package_behind_one_placeholder():
    script = static_text("attention_view.js")
    assert script.count("PTLEARN_PARAMS") == 1
    assert "ptlearn-layer" in script and "ptlearn-head" in script and "mouseenter" in script
    assert static_text("attention_view.html").count("<!-- ptlearn:view -->") == 1


def test_attention_view_return_mode_gives_html():
    view = viz.attention_view(make_attentions(), TOKENS, html_action="return")
    assert "ptlearn-attention-" in view.data and "<script src" not in view.data
    with pytest.raises(ValueError, match="html_action"):
        viz.attention_view(make_attentions(), TOKENS, html_action="show")
