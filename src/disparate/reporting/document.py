"""One small document model, rendered to Markdown and to one self-contained HTML page.

A :class:`Document` is a title and a sequence of blocks (:class:`Heading`,
:class:`Paragraph`, :class:`Bullets`, :class:`Facts`, :class:`Table`, :class:`Image`);
text is a string or a tuple of strings, :class:`Strong` and :class:`Code` runs. Plain
strings are escaped by each renderer (Markdown markup characters, HTML entities), so values
from result files never inject markup. HTML embeds every image as a base64 data URI.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CSS",
    "Block",
    "Bullets",
    "Cell",
    "Code",
    "Document",
    "Facts",
    "Heading",
    "Image",
    "Link",
    "Paragraph",
    "Strong",
    "Table",
    "Text",
    "markdown_blocks",
    "render_html",
    "render_markdown",
]


@dataclass(frozen=True)
class Strong:
    """Bold text."""

    text: str


@dataclass(frozen=True)
class Code:
    """Inline code: a file name, a key, a command."""

    text: str


@dataclass(frozen=True)
class Link:
    """A link to a file or folder (a relative path)."""

    text: str
    href: str


Inline = str | Strong | Code | Link
Text = Inline | tuple[Inline, ...]


@dataclass(frozen=True)
class Cell:
    """A table cell with an HTML class and tooltip (Markdown shows the content only)."""

    content: Text
    cls: str = ""
    title: str = ""


@dataclass(frozen=True)
class Heading:
    """A section heading (level 2 below the document's title)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """A paragraph; ``cls`` styles it in HTML (e.g. ``statement``, ``note``)."""

    content: Text
    cls: str = ""


@dataclass(frozen=True)
class Bullets:
    """A bulleted list."""

    items: tuple[Text, ...]
    cls: str = ""


@dataclass(frozen=True)
class Facts:
    """Label: value pairs (Markdown: a list with bold labels; HTML: a definition list)."""

    items: tuple[tuple[str, Text], ...]


@dataclass(frozen=True)
class Table:
    """A table: a header and rows of text or :class:`Cell`; ``right``: columns aligned
    right in Markdown; ``row_classes``: an HTML class per row (``""`` for none)."""

    header: tuple[str, ...]
    rows: tuple[tuple[Text | Cell, ...], ...]
    row_classes: tuple[str, ...] = ()
    cls: str = ""
    right: tuple[int, ...] = ()


@dataclass(frozen=True)
class Image:
    """A PNG beside the Markdown file (linked by name) or embedded in the HTML page."""

    path: Path
    caption: str


Block = Heading | Paragraph | Bullets | Facts | Table | Image


@dataclass(frozen=True)
class Document:
    """A title and its blocks."""

    title: str
    blocks: tuple[Block, ...]


def _runs(text: Text) -> tuple[Inline, ...]:
    return text if isinstance(text, tuple) else (text,)


# ----------------------------------------------------------------------------- Markdown


def _md_escape(text: str) -> str:
    """Plain text for Markdown (table cells included): pipes and markup escaped."""
    return re.sub(r"([\\`*|<])", r"\\\1", str(text)).replace("\n", " ")


def _md(text: Text) -> str:
    out = []
    for run in _runs(text):
        if isinstance(run, Strong):
            out.append(f"**{_md_escape(run.text)}**")
        elif isinstance(run, Code):
            out.append(f"`{run.text}`")
        elif isinstance(run, Link):
            out.append(f"[{_md_escape(run.text)}]({run.href})")
        else:
            out.append(_md_escape(run))
    return "".join(out)


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return ["#" * block.level + " " + _md_escape(block.text)]
    if isinstance(block, Paragraph):
        return [_md(block.content)]
    if isinstance(block, Bullets):
        return [f"- {_md(item)}" for item in block.items]
    if isinstance(block, Facts):
        return [f"- **{_md_escape(label)}:** {_md(value)}" for label, value in block.items]
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_escape(h) for h in block.header) + " |",
                 "|" + "|".join("---:" if i in block.right else "---"
                                for i in range(len(block.header))) + "|"]
        lines += ["| " + " | ".join(_md(c.content if isinstance(c, Cell) else c)
                                    for c in row) + " |" for row in block.rows]
        return lines
    return [f"![{_md_escape(block.caption)}]({Path(block.path).name})", "",
            f"*{_md_escape(block.caption)}*"]


def markdown_blocks(blocks: Sequence[Block]) -> str:
    """Blocks as Markdown, a blank line between two (a part of a larger document)."""
    lines: list[str] = []
    for block in blocks:
        lines += [*_md_block(block), ""]
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(document: Document) -> str:
    """The document as Markdown; images are referenced by file name."""
    return f"# {_md_escape(document.title)}\n\n" + markdown_blocks(document.blocks)


# ----------------------------------------------------------------------------- HTML

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
tr.highlight td { background: #fff3c4; font-weight: bold; }
td.small { color: #b03030; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.facts dt { font-weight: bold; } dl.facts dd { margin: 0; }
.statement { background: #f6f8fa; border-left: 4px solid #4c72b0; padding: .5em .8em; }
.statement.not-private { border-left-color: #c44e52; }
.note { color: #555; font-size: .9em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
"""


def _h(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html(text: Text) -> str:
    out = []
    for run in _runs(text):
        if isinstance(run, Strong):
            out.append(f"<strong>{_h(run.text)}</strong>")
        elif isinstance(run, Code):
            out.append(f"<code>{_h(run.text)}</code>")
        elif isinstance(run, Link):
            out.append(f'<a href="{_h(run.href)}">{_h(run.text)}</a>')
        else:
            out.append(_h(run))
    return "".join(out)


def _attr(name: str, value: str) -> str:
    return f' {name}="{_h(value)}"' if value else ""


def _cell(cell: Text | Cell) -> str:
    if isinstance(cell, Cell):
        attrs = _attr("class", cell.cls) + _attr("title", cell.title)
        return f"<td{attrs}>{_html(cell.content)}</td>"
    return f"<td>{_html(cell)}</td>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _html_block(block: Block) -> list[str]:
    if isinstance(block, Heading):
        return [f"<h{block.level}>{_h(block.text)}</h{block.level}>"]
    if isinstance(block, Paragraph):
        return [f"<p{_attr('class', block.cls)}>{_html(block.content)}</p>"]
    if isinstance(block, Bullets):
        return ([f"<ul{_attr('class', block.cls)}>"]
                + [f"<li>{_html(item)}</li>" for item in block.items] + ["</ul>"])
    if isinstance(block, Facts):
        return (['<dl class="facts">']
                + [f"<dt>{_h(label)}</dt><dd>{_html(value)}</dd>" for label, value in block.items]
                + ["</dl>"])
    if isinstance(block, Table):
        out = [f"<table{_attr('class', block.cls)}>",
               "<thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in block.header)
               + "</tr></thead>", "<tbody>"]
        for i, row in enumerate(block.rows):
            cls = block.row_classes[i] if i < len(block.row_classes) else ""
            out.append(f"<tr{_attr('class', cls)}>" + "".join(_cell(c) for c in row) + "</tr>")
        return [*out, "</tbody>", "</table>"]
    return [f'<figure><img src="{_data_uri(block.path)}" alt="{_h(block.caption)}">'
            f"<figcaption>{_h(block.caption)}</figcaption></figure>"]


def render_html(document: Document, css: str = CSS) -> str:
    """The document as one self-contained HTML page (inline CSS, images embedded)."""
    body = [f"<h1>{_h(document.title)}</h1>"]
    for block in document.blocks:
        body += _html_block(block)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{_h(document.title)}</title>\n<style>{css}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
