"""One renderer for everything a fit reports: Markdown, HTML and text from one description.

Each reportable object (the equations, the priors, the fixed effects, the
variance components and ICC, the diagnostics, the plots, the frequentist
comparison) becomes a :class:`Section`: a title and a list of blocks
(:class:`Note`, :class:`Table`, :class:`Math`, :class:`Image`). A Section
renders itself as Markdown, HTML (also its notebook display) and plain text,
so notebooks, the command line and the HTML report all show the same thing.
The sections themselves are made in :mod:`bayesmlm.report.sections`.

Examples
--------
>>> import pandas as pd

from ..results.format import format_values
>>> s = Section("Example", (Note("Two numbers."), Table(pd.DataFrame({"mean": [1.23456]}, index=["a"]))))
>>> print(s.to_text())
Example
=======
Two numbers.
    mean
a  1.235
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

import pandas as pd

from ..results.format import format_values

__all__ = ["Note", "Table", "Math", "Image", "Section", "format_table", "equation_html"]

_KINDS = ("plain", "ok", "warn", "bad")


@dataclass(frozen=True)
class Note:
    """A paragraph; ``kind`` is ``"plain"``, ``"ok"``, ``"warn"`` or ``"bad"`` (a verdict)."""

    text: str
    kind: str = "plain"

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"Unknown note kind '{self.kind}'. Valid kinds: {', '.join(_KINDS)}.")


@dataclass(frozen=True, eq=False)
class Table:
    """A DataFrame with a caption; numbers are formatted by :func:`format_table`.

    ``name`` is the stem of the CSV file the command line writes it to.
    """

    frame: pd.DataFrame
    caption: str = ""
    name: str = ""


@dataclass(frozen=True)
class Math:
    """An equation, as LaTeX (Markdown and notebooks) and as plain text (text and HTML)."""

    latex: str
    text: str


@dataclass(frozen=True, eq=False)
class Image:
    """A figure as PNG bytes (and optionally SVG text), with the file name (PNG) it is written under."""

    png: bytes
    caption: str
    filename: str
    svg: str | None = None


def format_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as strings, its index as columns (:func:`bayesmlm.results.format.format_values`).

    Examples
    --------
    >>> format_table(pd.DataFrame({"mean": [0.0123456]}, index=pd.Index(["smu"], name="term"))).values.tolist()
    [['smu', '0.01235']]
    """
    out = frame.copy()
    if not isinstance(out.index, pd.RangeIndex):
        if not isinstance(out.index, pd.MultiIndex) and out.index.name is None:
            out.index.name = ""
        out = out.reset_index()
    out = format_values(out)
    out.columns = [str(c) for c in out.columns]
    return out


_GREEK_INDEX = re.compile(r"(?<![\w])([βγτu])(\d+)(_j)?")
_SUBSCRIPT = re.compile(r"([A-Za-z][\w.]*?)_(ij|j)\b")


def equation_html(text: str) -> str:
    """An equation's text form as HTML, with indices as subscripts.

    Examples
    --------
    >>> equation_html("tech_ij = β0_j + β1_j·smu_ij + e_ij")
    'tech<sub>ij</sub> = β<sub>0j</sub> + β<sub>1j</sub>·smu<sub>ij</sub> + e<sub>ij</sub>'
    """
    out = html.escape(text)
    out = _GREEK_INDEX.sub(lambda m: f"{m[1]}<sub>{m[2]}{'j' if m[3] else ''}</sub>", out)
    return _SUBSCRIPT.sub(lambda m: f"{m[1]}<sub>{m[2]}</sub>", out)


def _md_escape(s: str) -> str:
    return s.replace("|", r"\|")


def _block_markdown(b) -> str:
    if isinstance(b, Note):
        return {"plain": "", "ok": "✔ ", "warn": "⚠ ", "bad": "✘ "}[b.kind] + b.text
    if isinstance(b, Math):
        return f"$${b.latex}$$"
    if isinstance(b, Image):
        return f"![{b.caption}]({b.filename})"
    t = format_table(b.frame)
    head = "| " + " | ".join(_md_escape(c) for c in t.columns) + " |"
    sep = "|" + "|".join("---" for _ in t.columns) + "|"
    rows = ["| " + " | ".join(_md_escape(v) for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join(([f"*{b.caption}*", ""] if b.caption else []) + [head, sep, *rows])


def _block_html(b) -> str:
    if isinstance(b, Note):
        return f'<p class="note {b.kind}">{html.escape(b.text)}</p>'
    if isinstance(b, Math):
        return (f'<div class="equation">{equation_html(b.text)}</div>'
                f'<details class="latex"><summary>LaTeX</summary><code>{html.escape(b.latex)}</code></details>')
    if isinstance(b, Image):
        data = base64.b64encode(b.png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.caption)}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    t = format_table(b.frame)
    raw = b.frame if isinstance(b.frame.index, pd.RangeIndex) else b.frame.reset_index()
    num = [pd.api.types.is_numeric_dtype(raw[c]) and not pd.api.types.is_bool_dtype(raw[c]) for c in raw.columns]
    cls = [' class="num"' if n else "" for n in num]
    cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
    head = "".join(f"<th{k}>{html.escape(c)}</th>" for c, k in zip(t.columns, cls))
    rows = "".join("<tr>" + "".join(f"<td{k}>{html.escape(v)}</td>" for v, k in zip(r, cls)) + "</tr>"
                   for r in t.itertuples(index=False))
    return f'<table class="tidy">{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def _block_text(b) -> str:
    if isinstance(b, Note):
        return {"plain": "", "ok": "[ok] ", "warn": "[warning] ", "bad": "[problem] "}[b.kind] + b.text
    if isinstance(b, Math):
        return "  " + b.text
    if isinstance(b, Image):
        return f"[figure: {b.caption} -> {b.filename}]"
    t = format_table(b.frame)
    return ((b.caption + "\n") if b.caption else "") + t.to_string(index=False)


@dataclass(frozen=True, eq=False)
class Section:
    """A titled part of a report: blocks that render as Markdown, HTML or text.

    Attributes
    ----------
    title : str
    blocks : tuple of Note, Table, Math or Image
    key : str
        A short identifier (the HTML anchor), e.g. ``"fixed"``.

    Examples
    --------
    >>> s = Section("Verdict", (Note("All chains agree.", "ok"),), key="diagnostics")
    >>> s.to_markdown()
    '## Verdict\\n\\n✔ All chains agree.'
    """

    title: str
    blocks: tuple
    key: str = ""

    def to_markdown(self) -> str:
        """The section as Markdown (figures as links to their file names)."""
        return "\n\n".join([f"## {self.title}", *(_block_markdown(b) for b in self.blocks)])

    def to_html(self) -> str:
        """The section as an HTML fragment (figures embedded as base64 PNG)."""
        anchor = f' id="{html.escape(self.key)}"' if self.key else ""
        inner = "\n".join(_block_html(b) for b in self.blocks)
        return f'<section{anchor}><h2>{html.escape(self.title)}</h2>\n{inner}\n</section>'

    def to_text(self) -> str:
        """The section as plain text, for a terminal."""
        return "\n".join([self.title, "=" * len(self.title), *(_block_text(b) for b in self.blocks)])

    def images(self) -> list[Image]:
        """The figures of this section."""
        return [b for b in self.blocks if isinstance(b, Image)]

    def tables(self) -> list[Table]:
        """The tables of this section."""
        return [b for b in self.blocks if isinstance(b, Table)]

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def __str__(self) -> str:
        return self.to_text()
