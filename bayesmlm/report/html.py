"""The HTML report: one self-contained file (figures embedded) that a browser opens.

It holds the sections of :func:`bayesmlm.report.sections.report_sections`, rendered
by :mod:`bayesmlm.report.render`: overview, diagnostics with verdicts, equations,
priors, fixed effects, variance components and ICC, the plots and the
frequentist comparison. No scripts, no external files, no network.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

from ..plots.save import PLOTS
from .render import Section

__all__ = ["report_html", "write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #dde; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; } .meta { color: #666; font-size: 0.9em; }
table.tidy { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; font-variant-numeric: tabular-nums; }
table.tidy th, table.tidy td { border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
table.tidy th.num, table.tidy td.num { text-align: right; }
table.tidy thead th { background: #f3f4f8; } caption { text-align: left; font-style: italic; padding: 0.3em 0; }
.equation { font-family: 'Cambria Math', 'STIX Two Math', Georgia, serif; font-size: 1.15em; margin: 0.3em 0 0.3em 1.5em; }
details.latex { margin-left: 1.5em; font-size: 0.8em; color: #666; }
p.note.ok { background: #e9f7ec; border-left: 4px solid #2e9d4b; padding: 0.3em 0.7em; }
p.note.warn { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.3em 0.7em; }
p.note.bad { background: #fdecec; border-left: 4px solid #c62828; padding: 0.3em 0.7em; }
figure { margin: 1.2em 0; } figure img { max-width: min(100%, 1000px); height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.9em; max-width: 60em; }
"""


def report_html(sections: list[Section], title: str, subtitle: str = "") -> str:
    """The report as one HTML document.

    Parameters
    ----------
    sections : list of Section
        In reading order; each gets an entry in the navigation bar.
    title : str
    subtitle : str
        One line under the title (e.g. the formula).

    Examples
    --------
    >>> from bayesmlm.report.render import Note, Section
    >>> doc = report_html([Section("Hello", (Note("World."),), key="hello")], "A report")
    >>> doc.startswith("<!DOCTYPE html>") and '<a href="#hello">Hello</a>' in doc
    True
    """
    nav = " ".join(f'<a href="#{html.escape(s.key)}">{html.escape(s.title)}</a>' for s in sections if s.key)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(s.to_html() for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<header><h1>{html.escape(title)}</h1>\n"
            f'<p class="meta">{html.escape(subtitle)}{" · " if subtitle else ""}written by bayesmlm, {stamp}</p>\n'
            f"<nav>{nav}</nav></header>\n<main>\n{body}\n</main>\n</body>\n</html>\n")


def write_report(fit, path, *, title: str = "", which=PLOTS,
                 term: str | None = None, compare: bool = True, prob: float = 0.95, sections: list[Section] | None = None
                 ) -> Path:
    """Write report.html for a fit: one self-contained file.

    Parameters
    ----------
    fit : Fit
    path : str or Path
        The file to write.
    title : str
        Heading of the report (default: the formula).
    which, term, compare, prob :
        As :func:`bayesmlm.report.sections.report_sections` takes them.
    sections : list of Section, optional
        Sections already made (the command line makes them once for the
        Markdown and the HTML); then ``which``, ``term``, ``compare`` and
        ``prob`` are not used.

    Returns
    -------
    Path

    Examples
    --------
    >>> write_report(fit, "out/report.html", which=["forest"])  # doctest: +SKIP
    PosixPath('out/report.html')
    """
    from .sections import report_sections

    if sections is None:
        sections = report_sections(fit, title="", which=which, term=term, compare=compare, prob=prob)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(sections, title or fit.formula, subtitle=fit.formula if title else ""), encoding="utf-8")
    return path
