"""The report: one renderer (text, markdown, HTML) for the sections a fit reports, and report.html.

Examples
--------
>>> from bayesmlm.report import write_report
>>> write_report(fit, "report.html")  # doctest: +SKIP
"""

from .html import write_report

__all__ = ["write_report"]
