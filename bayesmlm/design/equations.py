"""Level-1, level-2 and combined equations of a design, as LaTeX and as text.

Symbols follow the tutorial this project follows (Raudenbush and Bryk):
beta_kj for level-1 coefficients, gamma_km for fixed effects, u_kj for random
effects, e_ij for the residual, tau_kl for the random-effect covariances and
sigma^2 for the residual variance.
"""

from __future__ import annotations

from .equation_forms import Equations, outcome_sides, tex_name
from .equations3 import three_level_equations
from .levels import level_structure
from .matrices import Design
from .structure import factor_structure

__all__ = ["model_equations"]

def model_equations(design: Design) -> Equations:
    """Write a design as level equations and as the combined model.

    Two grouping factors, one nested in the other in the data (see
    :func:`bayesmlm.design.structure.factor_structure`), are written as three
    levels (:func:`bayesmlm.design.equations3.three_level_equations`); any
    other design as two levels of its first grouping factor.

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("tech ~ smu + (1 + smu | country)", bayesmlm.datasets.load("wvs7_sim"))
    >>> print(model_equations(m.design).level1_text)
    tech_ij = β0_j + β1_j·smu_ij + e_ij
    """
    if design.has_rows and len(design.spec.groups) == 2:
        hierarchy = factor_structure(design).hierarchy
        if hierarchy:
            return three_level_equations(design, *hierarchy)
    ls = level_structure(design)
    lhs_tex, lhs_txt, form_tex, form_txt = outcome_sides(design.spec.family, design.spec.response, "ij")
    resid_tex, resid_txt = (r" + e_{ij}", " + e_ij") if design.spec.family.has_sigma else ("", "")
    k_of = {t: k for k, t in enumerate(ls.level1_terms)} if "(Intercept)" in ls.level1_terms else \
        {t: k + 1 for k, t in enumerate(ls.level1_terms)}
    l1_tex, l1_txt = [], []
    for t, k in k_of.items():
        x_tex = "" if t == "(Intercept)" else " " + tex_name(t) + "_{ij}"
        x_txt = "" if t == "(Intercept)" else "·" + t + "_ij"
        l1_tex.append(rf"\beta_{{{k}j}}{x_tex}")
        l1_txt.append(f"β{k}_j{x_txt}")
    level1 = f"{lhs_tex} = " + form_tex.format(" + ".join(l1_tex)) + resid_tex
    level1_text = f"{lhs_txt} = " + form_txt.format(" + ".join(l1_txt)) + resid_txt
    level2, level2_text, comb_tex, comb_txt = [], [], [], []
    for t, k in k_of.items():
        m, rhs_tex, rhs_txt = 0, [], []
        cols = [c for c, l1 in enumerate(ls.fixed_level1) if l1 == t]
        cols.sort(key=lambda c: ls.fixed_level2[c] != "1")
        for c in cols:
            w = ls.fixed_level2[c]
            m = 0 if w == "1" else (m + 1 if rhs_tex else 1)
            g_tex, g_txt = rf"\gamma_{{{k}{m}}}", f"γ{k}{m}"
            w_tex, w_txt = ("", "") if w == "1" else (" " + tex_name(w) + "_j", "·" + w + "_j")
            rhs_tex.append(g_tex + w_tex)
            rhs_txt.append(g_txt + w_txt)
            x_tex = "" if t == "(Intercept)" else " " + tex_name(t) + "_{ij}"
            x_txt = "" if t == "(Intercept)" else "·" + t + "_ij"
            comb_tex.append(g_tex + w_tex + x_tex)
            comb_txt.append(g_txt + w_txt + x_txt)
        if t in ls.random_terms:
            rhs_tex.append(rf"u_{{{k}j}}")
            rhs_txt.append(f"u{k}_j")
        level2.append(rf"\beta_{{{k}j}} = " + (" + ".join(rhs_tex) or "0"))
        level2_text.append(f"β{k}_j = " + (" + ".join(rhs_txt) or "0"))
    for t in ls.random_terms:
        k = k_of[t]
        comb_tex.append(rf"u_{{{k}j}}" + ("" if t == "(Intercept)" else " " + tex_name(t) + "_{ij}"))
        comb_txt.append(f"u{k}_j" + ("" if t == "(Intercept)" else "·" + t + "_ij"))
    combined = f"{lhs_tex} = " + form_tex.format(" + ".join(comb_tex)) + resid_tex
    combined_text = f"{lhs_txt} = " + form_txt.format(" + ".join(comb_txt)) + resid_txt
    random, random_text = _random_equation(design, ls.random_terms, k_of)
    return Equations(level1, tuple(level2), random, combined, level1_text, tuple(level2_text), random_text, combined_text)


def _random_equation(design: Design, terms: tuple[str, ...], k_of: dict) -> tuple[str, str]:
    ks = [k_of[t] for t in terms]
    correlated = {(a, b) for blk in design.blocks if blk.correlated for a in blk.terms for b in blk.terms}
    tau = [[(rf"\tau_{{{min(ka, kb)}{max(ka, kb)}}}" if (a, b) in correlated or a == b else "0") for b, kb in zip(terms, ks)]
           for a, ka in zip(terms, ks)]
    u_vec = r" \\ ".join(rf"u_{{{k}j}}" for k in ks)
    zeros = r" \\ ".join("0" for _ in ks)
    mat = r" \\ ".join(" & ".join(row) for row in tau)
    tex = (rf"\begin{{pmatrix}} {u_vec} \end{{pmatrix}} \sim N\left(\begin{{pmatrix}} {zeros} \end{{pmatrix}}, "
           rf"\begin{{pmatrix}} {mat} \end{{pmatrix}}\right)")
    if design.spec.family.has_sigma:
        tex += r", \quad e_{ij} \sim N(0, \sigma^2)"
    txt_tau = "; ".join(" ".join(f"τ{min(ka, kb)}{max(ka, kb)}" if (a, b) in correlated or a == b else "0"
                                 for b, kb in zip(terms, ks)) for a, ka in zip(terms, ks))
    text = f"({', '.join(f'u{k}_j' for k in ks)}) ~ N(0, [{txt_tau}])"
    if design.spec.family.has_sigma:
        text += ", e_ij ~ N(0, σ²)"
    return tex, text
