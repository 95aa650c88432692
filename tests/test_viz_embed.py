"""viz.embed_attention: the exported page in a sandboxed iframe, its selection and its size budget."""

import html
import json
import re

import pytest
import torch

from ptlearn import viz
from ptlearn.viz.embed import BUDGET_KB

TOKENS = ["[CLS]", 'say "hi"', "</script>", "&", "[SEP]"]


def make_attentions(n_layers=3, n_heads=4, t=5):
    g = torch.Generator().manual_seed(0)
    return tuple(
        torch.softmax(torch.randn(1, n_heads, t, t, generator=g), -1) for _ in range(n_layers)
    )


def page_data(view) -> dict:
    """The data dict inside the iframe's page (unescaped from srcdoc)."""
    srcdoc = re.search(r'srcdoc="([^"]*)"', view.html).group(1)
    page = html.unescape(srcdoc)
    assert page == view.page
    params = re.search(r"\}\)\((\{.*\})\);\s*</script>", page, re.S).group(1)
    return json.loads(params)["data"]


def test_the_iframe_holds_the_whole_exported_page_and_no_external_reference():
    att = make_attentions()
    view = viz.embed_attention(att, TOKENS, title="demo")
    assert view._repr_html_() == view.html
    assert view.html.startswith('<iframe class="ptlearn-attention-embed" sandbox="allow-scripts"')
    assert "allow-same-origin" not in view.html
    data = page_data(view)
    assert (data["n_layers"], data["n_heads"], data["tokens"]) == (3, 4, TOKENS)
    weights = torch.tensor(data["attention"])
    torch.testing.assert_close(weights, torch.stack([a[0] for a in att]), atol=5e-4, rtol=0)
    page = view.page.replace('"http://www.w3.org/2000/svg"', "")  # a namespace, not a request
    assert not re.search(r"\bsrc=|https?://", page), "the page must need nothing external"
    assert view.shape == (3, 4, 5, 5) and view.nbytes == len(view.html.encode())
    assert "3 layer(s) x 4 head(s)" in repr(view)


def test_layers_and_heads_keep_a_subset_and_say_so_in_the_title():
    att = make_attentions()
    view = viz.embed_attention(att, TOKENS, layers=[-1], heads=[1, 3], title="t")
    data = page_data(view)
    assert (data["n_layers"], data["n_heads"]) == (1, 2)
    expected = att[2][0, [1, 3]]
    torch.testing.assert_close(torch.tensor(data["attention"][0]), expected, atol=5e-4, rtol=0)
    assert data["title"] == "t (layers 2; heads 1, 3 shown as 0, 1, ...)"
    with pytest.raises(ValueError, match=r"heads=\[7\]: choose indices in 0\.\.3"):
        viz.embed_attention(att, TOKENS, heads=[7])


def test_cross_attention_needs_and_uses_key_tokens():
    att = (torch.softmax(torch.randn(1, 2, 3, 5), -1),)
    view = viz.embed_attention(att, ["a", "b", "c"], tokens_k=TOKENS)
    assert page_data(view)["tokens_k"] == TOKENS
    with pytest.raises(ValueError, match="tokens_k"):
        viz.embed_attention(att, ["a", "b", "c"])


def test_a_view_over_the_budget_is_refused_with_what_to_cut():
    big = make_attentions(n_layers=6, n_heads=12, t=48)
    tokens = [f"t{i}" for i in range(48)]
    with pytest.raises(ValueError) as err:
        viz.embed_attention(big, tokens)
    message = str(err.value)
    assert f"over its budget of {BUDGET_KB} kB" in message
    assert "6 layers x 12 heads x 48 x 48 tokens" in message
    assert "layers=" in message and "heads=" in message
    small = viz.embed_attention(big, tokens, layers=[5], heads=[0, 1])  # what the message suggests
    assert small.nbytes < BUDGET_KB * 1000
    assert viz.embed_attention(big, tokens, budget_kb=5000).nbytes > BUDGET_KB * 1000
