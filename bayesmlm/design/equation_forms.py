"""The written form of a model's equations: one record, shown as text, Markdown and LaTeX.

Made by :func:`bayesmlm.design.equations.model_equations` (two levels) and
:func:`bayesmlm.design.equations3.three_level_equations` (three levels).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Equations", "tex_name"]


@dataclass(frozen=True)
class Equations:
    """The model written out. Each field is LaTeX; ``*_text`` fields are plain text.

    Displays as rendered equations in a notebook; ``str()`` gives the text.
    ``level3`` is empty for a two-level model.
    """

    level1: str
    level2: tuple[str, ...]
    random: str
    combined: str
    level1_text: str
    level2_text: tuple[str, ...]
    random_text: str
    combined_text: str
    level3: tuple[str, ...] = ()
    level3_text: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = ["Level 1:", "  " + self.level1_text, "Level 2:", *("  " + t for t in self.level2_text)]
        if self.level3_text:
            lines += ["Level 3:", *("  " + t for t in self.level3_text)]
        return "\n".join(lines + ["Random effects:", "  " + self.random_text, "Combined:", "  " + self.combined_text])

    def _repr_markdown_(self) -> str:
        blocks = ["**Level 1**", f"$${self.level1}$$", "**Level 2**", *(f"$${t}$$" for t in self.level2)]
        if self.level3:
            blocks += ["**Level 3**", *(f"$${t}$$" for t in self.level3)]
        blocks += ["**Random effects**", f"$${self.random}$$", "**Combined**", f"$${self.combined}$$"]
        return "\n\n".join(blocks)

    def _repr_latex_(self) -> str:
        rows = [self.level1, *self.level2, *self.level3, self.random, self.combined]
        return r"$\begin{aligned}" + r"\\ ".join(rows) + r"\end{aligned}$"


def tex_name(name: str) -> str:
    r"""A term or column name as LaTeX text (underscores escaped, ``(Intercept)`` as 1).

    Examples
    --------
    >>> print(tex_name("mean_ses"))
    \text{mean\_ses}
    """
    return r"\text{" + name.replace("_", r"\_").replace("(Intercept)", "1") + "}"


