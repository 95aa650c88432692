"""ptlearn.site without a browser: preparing executed notebooks, rewriting links, the command."""

from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ptlearn import cli
from ptlearn.site import CDN_NOTE, WIDGET_VIEW, Linker, SiteError, find_chapters, prepare_notebook

REPO = Path(__file__).resolve().parents[1]
PNG = "iVBORw0KGgo="


def executed(*cells):
    nb = new_notebook(cells=[new_markdown_cell("# Chapter 99 — Test"), *cells])
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.execution_count = i
    return nb


def test_widgets_keep_their_picture_and_cdn_views_are_left_out():
    widget = new_output(
        "display_data", {WIDGET_VIEW: {"model_id": "x"}, "image/png": PNG, "text/plain": "box"}
    )
    bare_widget = new_output("display_data", {WIDGET_VIEW: {"model_id": "y"}, "text/plain": "b"})
    bertviz = new_output(
        "display_data",
        {"text/html": '<script src="https://cdnjs.cloudflare.com/require.min.js"></script>'},
    )
    bertviz_js = new_output(
        "display_data",
        {"application/javascript": "require.config({paths: {d3: 'https://cdnjs.x/d3.min'}})"},
    )
    view = new_output(
        "execute_result", {"text/html": '<iframe class="ptlearn-attention-embed" srcdoc="x">'}
    )
    nb = executed(
        new_code_cell("plt.show()", outputs=[widget, bare_widget]),
        new_code_cell("head_view(...)", outputs=[bertviz, bertviz_js, view]),
    )
    nb.metadata["widgets"] = {"state": {}}
    figures, views = prepare_notebook(nb, "t.ipynb")
    assert (figures, len(views)) == (1, 1)
    assert "widgets" not in nb.metadata
    first, second = nb.cells[1].outputs, nb.cells[2].outputs
    assert set(first[0].data) == {"image/png", "text/plain"}
    assert WIDGET_VIEW not in first[1].data and "run the notebook" in first[1].data["text/plain"]
    assert second[0].data == {"text/plain": CDN_NOTE} and second[1].data == {"text/plain": CDN_NOTE}
    assert "ptlearn-attention-embed" in second[2].data["text/html"]


@pytest.mark.parametrize(
    "cell, problem",
    [
        (new_code_cell("fig = 1\nplt.show()"), r"calls plt\.show\(\) but has no figure"),
        (
            new_code_cell("1/0", outputs=[new_output("error", ename="ZeroDivisionError")]),
            "raised ZeroDivisionError",
        ),
    ],
)
def test_a_notebook_that_lost_figures_or_failed_is_refused(cell, problem):
    with pytest.raises(SiteError, match=problem):
        prepare_notebook(executed(cell), "t.ipynb")
    never_ran = new_code_cell("x = 1")
    nb = executed()
    nb.cells.append(never_ran)
    with pytest.raises(SiteError, match="never executed"):
        prepare_notebook(nb, "t.ipynb")


def test_plt_show_inside_a_branch_that_did_not_run_is_fine():
    nb = executed(new_code_cell("if online:\n    plt.show()"))
    assert prepare_notebook(nb, "t.ipynb") == (0, [])


def test_links_point_into_the_site_or_to_github_and_foreign_images_become_text(tmp_path):
    chapters = find_chapters(REPO, ["01"])
    linker = Linker(REPO, tmp_path, chapters, "me/course", "main")
    page = (
        '<a href="02_transformer.ipynb">next</a> <a href="01_attention.ipynb#sec">here</a> '
        '<a href="../ptlearn/attention.py">code</a> <a href="../benchmarks/RESULTS.md">bench</a> '
        '<a href="https://x.org/">web</a> <img src="https://colab.research.google.com/b.svg" '
        'alt="Open In Colab"> <img src="../docs/attention_explorer.png" alt="shot">'
    )
    out = linker.rewrite(page, "notebooks/01_attention.ipynb")
    assert 'href="https://github.com/me/course/blob/main/notebooks/02_transformer.ipynb"' in out
    assert 'href="01_attention.html#sec"' in out
    assert 'href="https://github.com/me/course/blob/main/ptlearn/attention.py"' in out
    assert 'href="benchmarks.html"' in out and 'href="https://x.org/"' in out
    assert '<span class="ptlearn-badge">Open In Colab</span>' in out and "colab.research" not in out
    assert 'src="images/docs-attention_explorer.png"' in out
    assert (tmp_path / "images" / "docs-attention_explorer.png").is_file()


def test_the_command_line_has_site_and_refuses_unknown_chapters(tmp_path, capsys):
    args = cli.build_parser().parse_args(["site", str(tmp_path / "s"), "--executed", "e"])
    assert (args.out_dir, args.executed, args.no_execute) == (str(tmp_path / "s"), "e", False)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["site", str(tmp_path / "s"), "--root", str(REPO), "--chapters", "77"])
    assert exit_.value.code == 2
    assert "No chapter matches ['77']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["site", str(tmp_path / "s"), "--root", str(tmp_path)])
    assert "No ptlearn source checkout found" in capsys.readouterr().err


def test_executed_copy_is_required_with_no_execute(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(
            ["site", str(tmp_path / "s"), "--root", str(REPO), "--chapters", "01"]
            + ["--executed", str(tmp_path / "none"), "--no-execute"]
        )
    assert "No executed copy of 01_attention.ipynb" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
