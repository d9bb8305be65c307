"""Tests of :mod:`disparate.reporting.document`: one document, two renderings."""

from __future__ import annotations

from pathlib import Path

from disparate.reporting.document import (
    Bullets,
    Cell,
    Code,
    Document,
    Facts,
    Heading,
    Image,
    Link,
    Paragraph,
    Strong,
    Table,
    render_html,
    render_markdown,
)

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _document(tmp_path: Path) -> Document:
    image = tmp_path / "fig.png"
    image.write_bytes(PNG)
    return Document(title="A <b> | title", blocks=(
        Facts((("Mode", "dp"), ("Seeds", "0, 1"))),
        Heading("Results"),
        Paragraph((Strong("Status:"), " 2 of 2 *done*; see ", Code("report.md"), " and ",
                   Link("run", "runs/abc"))),
        Table(header=("group", "acc %"), rows=(("a|b", "75.0 [70.0, 80.0]"),
                                               (Cell("8", cls="small", title="few"), "x<y")),
              row_classes=("", "highlight"), right=(1,)),
        Bullets(("one", (Strong("two"), " 2"))),
        Image(image, "Accuracy by group"),
    ))


def test_markdown_rendering_escapes_text(tmp_path: Path) -> None:
    md = render_markdown(_document(tmp_path))
    assert md.splitlines()[0] == "# A \\<b> \\| title"
    assert "- **Mode:** dp\n- **Seeds:** 0, 1\n\n## Results\n" in md
    assert "**Status:** 2 of 2 \\*done\\*; see `report.md` and [run](runs/abc)" in md
    assert "| group | acc % |\n|---|---:|\n| a\\|b | 75.0 [70.0, 80.0] |\n| 8 | x\\<y |" in md
    assert "- one\n- **two** 2" in md
    assert "![Accuracy by group](fig.png)\n\n*Accuracy by group*\n" in md
    assert md.endswith("*\n")


def test_html_rendering_is_self_contained_and_escaped(tmp_path: Path) -> None:
    page = render_html(_document(tmp_path))
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "<title>A &lt;b&gt; | title</title>" in page and "<b>" not in page
    assert '<dl class="facts">' in page and "<dt>Mode</dt><dd>dp</dd>" in page
    assert ("<p><strong>Status:</strong> 2 of 2 *done*; see <code>report.md</code> and "
            '<a href="runs/abc">run</a></p>') in page
    assert ('<tr class="highlight"><td class="small" title="few">8</td><td>x&lt;y</td></tr>'
            in page)
    assert "<li><strong>two</strong> 2</li>" in page
    assert '<img src="data:image/png;base64,iVBORw0KGgo' in page and "fig.png" not in page
    assert "<figcaption>Accuracy by group</figcaption>" in page
