"""The bertviz bridge: batch slicing, token checks, HTML with every token, and a clear install hint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ptlearn import viz
from ptlearn.viz.bertviz_bridge import bertviz_arguments

pytest.importorskip("bertviz")

TOKENS = ["[CLS]", "the", "cat", "[SEP]", "it", "sat", "[SEP]"]


def make_attentions(n_layers=2, n_heads=2, t_q=7, t_k=None, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(
        torch.softmax(torch.randn(batch, n_heads, t_q, t_k or t_q, generator=g), -1)
        for _ in range(n_layers)
    )


def test_arguments_slice_one_sequence_of_the_batch():
    att = make_attentions()
    args = bertviz_arguments(att, TOKENS, batch=1)
    assert len(args["attention"]) == 2
    assert args["attention"][0].shape == (1, 2, 7, 7)
    torch.testing.assert_close(args["attention"][1][0], att[1][1])


@pytest.mark.parametrize("view", [viz.head_view, viz.model_view])
def test_views_return_html_with_every_token(view):
    html = view(make_attentions(), TOKENS, html_action="return")
    for token in TOKENS:
        assert f'"{token}"' in html.data


def test_head_view_sentence_pair():
    html = viz.head_view(make_attentions(), TOKENS, sentence_b_start=4, html_action="return")
    assert "Sentence A -> Sentence B" in html.data
    with pytest.raises(ValueError, match="sentence_b_start"):
        viz.head_view(make_attentions(), TOKENS, sentence_b_start=9, html_action="return")


@pytest.mark.parametrize("view", [viz.head_view, viz.model_view])
def test_encoder_decoder_views(view):
    src, tgt = ["ich", "bin", "hier", "</s>"], ["<s>", "i", "am"]
    html = view(
        encoder_attention=make_attentions(t_q=4),
        decoder_attention=make_attentions(t_q=3),
        cross_attention=make_attentions(t_q=3, t_k=4),
        encoder_tokens=src,
        decoder_tokens=tgt,
        html_action="return",
    )
    for token in src + tgt:  # "</s>" is written "<\/s>" inside the script (same for JavaScript)
        assert f'"{token}"'.replace("</", "<\\/") in html.data
    with pytest.raises(ValueError, match="4 key positions but 3 encoder_tokens"):
        view(
            cross_attention=make_attentions(t_q=3, t_k=4),
            encoder_tokens=src[:3],
            decoder_tokens=tgt,
        )


def test_bridge_checks_inputs_before_calling_bertviz():
    with pytest.raises(ValueError, match="7 query positions but 6 tokens"):
        viz.head_view(make_attentions(), TOKENS[:6], html_action="return")
    with pytest.raises(ValueError, match="html_action"):
        viz.model_view(make_attentions(), TOKENS, html_action="show")
    with pytest.raises(ValueError, match="encoder_attention"):
        viz.head_view(html_action="return")


def test_missing_bertviz_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "bertviz", None)  # makes `import bertviz` raise ImportError
    with pytest.raises(ImportError, match="pip install bertviz"):
        viz.head_view(make_attentions(), TOKENS, html_action="return")


def test_importing_viz_imports_neither_bertviz_nor_transformers():
    code = (
        "import sys, ptlearn.viz; print(any(m in sys.modules for m in ('bertviz', 'transformers')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


HOSTILE = [
    "[CLS]",
    "</script><script>window.__pwned = 1</script>",
    "<!--<script>",
    "<img src=x onerror='window.__pwned = 2'>",
    "[SEP]",
]


@pytest.mark.parametrize("view", [viz.head_view, viz.model_view])
def test_returned_html_keeps_hostile_tokens_inside_the_script(view):
    page = view(make_attentions(t_q=len(HOSTILE)), HOSTILE, html_action="return").data
    script = page[page.rfind('<script type="text/javascript">') :]
    assert script.count("</script>") == 1 and "<!--" not in script  # only its own closing tag
    for token in HOSTILE:  # still there, as the same JavaScript string
        assert json.dumps(token).replace("</", "<\\/").replace("<!--", "<\\!--") in script


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_hostile_tokens_do_not_run_in_a_saved_bertviz_page(tmp_path):
    """The saved page, opened in Chromium (network blocked): no token's script runs."""
    sys.path.insert(0, str(Path(__file__).parent / "browser"))
    from lab import CHROMIUM, chromium, offline_context

    if not CHROMIUM.is_file():
        pytest.skip(f"No Chromium binary at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    html = viz.head_view(make_attentions(t_q=len(HOSTILE)), HOSTILE, html_action="return")
    path = tmp_path / "head_view.html"
    path.write_text(f"<!doctype html><html><body>{html.data}</body></html>", encoding="utf-8")
    with sync_playwright() as playwright, chromium(playwright) as browser:
        context, _blocked = offline_context(browser)
        try:
            page = context.new_page()
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            assert page.evaluate("window.__pwned") is None
            assert page.locator("script").count() == 2  # require.js and bertviz's own: no more
            assert page.locator("img").count() == 0
        finally:
            context.close()
