"""The written form of a model's equations: one record, shown as text, Markdown and LaTeX.

Made by :func:`bayesmlm.design.equations.model_equations` (two levels) and
:func:`bayesmlm.design.equations3.three_level_equations` (three levels).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Equations", "tex_name", "outcome_sides"]


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


_LINK_LHS = {"identity": ("{y}_{{{sub}}}", "{y}_{sub}"), "logit": (r"\operatorname{{logit}}(p_{{{sub}}})", "logit(p_{sub})"),
             "log": (r"\log(\lambda_{{{sub}}})", "log(λ_{sub})")}


def outcome_sides(family, y: str, sub: str) -> tuple[str, str, str, str]:
    """An equation's left side and the form of its right side (LaTeX, text, LaTeX, text).

    A cumulative model's linear predictor moves every category's threshold:
    ``link(P(y <= k)) = theta_k - (eta)``, with no intercept of its own (the
    thresholds are the intercepts), as ordinal::clmm and brms write it.

    Examples
    --------
    >>> from bayesmlm.spec.formula import family_of
    >>> lhs_tex, lhs, rhs_tex, rhs = outcome_sides(family_of("cumulative"), "rating", "ij")
    >>> lhs + " = " + rhs.format("β1_j·temp_ij")
    'logit(P(rating_ij ≤ k)) = θ_k − (β1_j·temp_ij)'
    """
    if family.name == "cumulative":
        return (rf"\operatorname{{{family.link}}}(P({tex_name(y)}_{{{sub}}} \le k))",
                f"{family.link}(P({y}_{sub} ≤ k))", r"\theta_k - \left({}\right)", "θ_k − ({})")
    tex, txt = _LINK_LHS[family.link]
    return tex.format(y=tex_name(y), sub=sub), txt.format(y=y, sub=sub), "{}", "{}"

