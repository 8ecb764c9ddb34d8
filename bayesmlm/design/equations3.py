"""Level-1, level-2 and level-3 equations of a nested design (pupils i in classes j in schools k).

Raudenbush and Bryk's notation (Hierarchical Linear Models, 2nd ed., ch. 8):
pi_pjk for the level-1 coefficients, beta_pqk for the level-2 coefficients,
gamma_pqs for the fixed effects, r_pjk and u_pqk for the class and school
random effects with covariances T_pi and T_beta, e_ijk for the residual.
Every fixed-effect column is read as a product of a level-1 part a_p (varies
within classes), a level-2 part X_q (constant within classes, not within
schools) and a level-3 part W_s (constant within schools), each 1 when absent.
"""

from __future__ import annotations

from .equation_forms import Equations, outcome_sides, tex_name
from .levels import is_group_level, split_interaction
from .matrices import Design, lme4_name

__all__ = ["three_level_equations"]

_SUB = {1: ("_{{ijk}}", "_ijk"), 2: ("_{{jk}}", "_jk"), 3: ("_{{k}}", "_k")}


def _by_level(label: str, columns: set, at_class: frozenset, at_school: frozenset) -> tuple[str, str, str]:
    """(level-1, level-2, level-3 part) of a term, each ``"1"`` when absent."""
    parts: dict[int, list[str]] = {1: [], 2: [], 3: []}
    if label not in ("Intercept", "(Intercept)"):
        for p in split_interaction(label):
            level = 3 if is_group_level(p, columns, at_school) else 2 if is_group_level(p, columns, at_class) else 1
            parts[level].append(p)
    return tuple(lme4_name(":".join(parts[k])) if parts[k] else "1" for k in (1, 2, 3))


def _index(keys: list) -> dict:
    """0 for the constant ``"1"``, then 1, 2, ... in order of appearance."""
    rest = [k for k in dict.fromkeys(keys) if k != "1"]
    return {"1": 0, **{k: i + 1 for i, k in enumerate(rest)}} if "1" in keys else {k: i + 1 for i, k in enumerate(rest)}


def _times(name: str, level: int) -> tuple[str, str]:
    """`` x_{ijk}`` and ``·x_ijk`` for a predictor at a level; nothing for the constant."""
    if name == "1":
        return "", ""
    return " " + tex_name(name) + _SUB[level][0].format(), "·" + name + _SUB[level][1]


def three_level_equations(design: Design, school: str, klass: str) -> Equations:
    """Write a design with classes nested in schools as level-1, level-2 and level-3 equations and the combined model.

    ``school`` and ``klass`` are the design's grouping factors, the second
    nested in the first (``"school"`` and ``"school:class"``).

    Examples
    --------
    >>> import bayesmlm
    >>> m = bayesmlm.MLM("strength ~ 1 + (1 | batch/cask)", bayesmlm.datasets.load("pastes"))
    >>> eq = three_level_equations(m.design, "batch", "batch:cask")
    >>> eq.level1_text, eq.level2_text, eq.level3_text
    ('strength_ijk = π0_jk + e_ijk', ('π0_jk = β00_k + r0_jk',), ('β00_k = γ000 + u00_k',))
    """
    columns = set(design.data.columns)
    at_class, at_school = design.level2[klass], design.level2[school]
    fixed = [_by_level(lab, columns, at_class, at_school) for lab in design.fixed_labels]
    class_random = [_by_level(t, columns, at_class, at_school)[0] for t in design.random_terms(klass)]
    school_random = [_by_level(t, columns, at_class, at_school)[:2] for t in design.random_terms(school)]
    p_of = _index(["1"] * bool(design.has_intercept or "1" in class_random) + [a for a, _, _ in fixed]
                  + class_random + [a for a, _ in school_random])
    q_of = {p: _index([x for a, x, _ in fixed if a == p] + [x for a, x in school_random if a == p]) for p in p_of}
    s_of = {(p, q): _index([w for a, x, w in fixed if (a, x) == (p, q)]) for p in p_of for q in q_of[p]}

    lhs_tex, lhs_txt, form_tex, form_txt = outcome_sides(design.spec.family, design.spec.response, "ijk")
    has_sigma = design.spec.family.has_sigma
    resid_tex, resid_txt = (r" + e_{ijk}", " + e_ijk") if has_sigma else ("", "")

    l1 = [(rf"\pi_{{{p_of[p]}jk}}" + _times(p, 1)[0], f"π{p_of[p]}_jk" + _times(p, 1)[1]) for p in p_of]
    level1 = (f"{lhs_tex} = " + form_tex.format(" + ".join(t for t, _ in l1)) + resid_tex,
              f"{lhs_txt} = " + form_txt.format(" + ".join(t for _, t in l1)) + resid_txt)
    level2, level3, combined = [], [], []
    for p, pi in p_of.items():
        rhs = [(rf"\beta_{{{pi}{q_of[p][q]}k}}" + _times(q, 2)[0], f"β{pi}{q_of[p][q]}_k" + _times(q, 2)[1])
               for q in q_of[p]]
        if p in class_random:
            rhs.append((rf"r_{{{pi}jk}}", f"r{pi}_jk"))
            combined.append((rf"r_{{{pi}jk}}" + _times(p, 1)[0], f"r{pi}_jk" + _times(p, 1)[1]))
        level2.append((rf"\pi_{{{pi}jk}} = " + (" + ".join(t for t, _ in rhs) or "0"),
                       f"π{pi}_jk = " + (" + ".join(t for _, t in rhs) or "0")))
        for q, qi in q_of[p].items():
            rhs3 = []
            for s, si in s_of[(p, q)].items():
                g = (rf"\gamma_{{{pi}{qi}{si}}}" + _times(s, 3)[0], f"γ{pi}{qi}{si}" + _times(s, 3)[1])
                rhs3.append(g)
                combined.append((g[0] + _times(q, 2)[0] + _times(p, 1)[0], g[1] + _times(q, 2)[1] + _times(p, 1)[1]))
            if (p, q) in school_random:
                rhs3.append((rf"u_{{{pi}{qi}k}}", f"u{pi}{qi}_k"))
                combined.append((rf"u_{{{pi}{qi}k}}" + _times(q, 2)[0] + _times(p, 1)[0],
                                 f"u{pi}{qi}_k" + _times(q, 2)[1] + _times(p, 1)[1]))
            level3.append((rf"\beta_{{{pi}{qi}k}} = " + (" + ".join(t for t, _ in rhs3) or "0"),
                           f"β{pi}{qi}_k = " + (" + ".join(t for _, t in rhs3) or "0")))
    fixed_first = sorted(combined, key=lambda c: "γur".index(c[1][0]))  # fixed, then school, then class effects
    comb = (f"{lhs_tex} = " + form_tex.format(" + ".join(t for t, _ in fixed_first)) + resid_tex,
            f"{lhs_txt} = " + form_txt.format(" + ".join(t for _, t in fixed_first)) + resid_txt)
    r_sym = [(rf"r_{{{p_of[p]}jk}}", f"r{p_of[p]}_jk", str(p_of[p])) for p in class_random]
    u_sym = [(rf"u_{{{p_of[p]}{q_of[p][q]}k}}", f"u{p_of[p]}{q_of[p][q]}_k", f"{p_of[p]}{q_of[p][q]}")
             for p, q in school_random]
    pieces = [_covariance(design, klass, r_sym, r"\pi", "π"), _covariance(design, school, u_sym, r"\beta", "β")]
    if has_sigma:
        pieces.append((r"e_{ijk} \sim N(0, \sigma^2)", "e_ijk ~ N(0, σ²)"))
    pieces = [p for p in pieces if p]
    return Equations(level1[0], tuple(t for t, _ in level2), r", \quad ".join(t for t, _ in pieces), comb[0],
                     level1[1], tuple(t for _, t in level2), "; ".join(t for _, t in pieces), comb[1],
                     tuple(t for t, _ in level3), tuple(t for _, t in level3))


def _covariance(design: Design, factor: str, symbols: list, tex_sub: str, txt_sub: str) -> tuple[str, str] | None:
    """``(r_0jk, r_1jk) ~ N(0, T_pi)`` with T's entries; zeros between uncorrelated blocks."""
    if not symbols:
        return None
    terms = design.random_terms(factor)
    together = {(a, b) for blk in design.blocks if blk.group == factor and blk.correlated for a in blk.terms
                for b in blk.terms}
    idx = [s[2] for s in symbols]

    def entry(i: int, j: int, tex: bool) -> str:
        if i != j and (terms[i], terms[j]) not in together:
            return "0"
        a, b = sorted((idx[i], idx[j]))
        sep = "," if len(a) > 1 else ""
        return rf"\tau_{{{tex_sub}\,{a}{sep}{b}}}" if tex else f"τ{txt_sub}({a}{sep}{b})"

    n = len(symbols)
    vec = r" \\ ".join(s[0] for s in symbols)
    mat = r" \\ ".join(" & ".join(entry(i, j, True) for j in range(n)) for i in range(n))
    tex = (rf"\begin{{pmatrix}} {vec} \end{{pmatrix}} \sim N\left(0, \begin{{pmatrix}} {mat} \end{{pmatrix}}\right)")
    text = (f"({', '.join(s[1] for s in symbols)}) ~ N(0, ["
            + "; ".join(" ".join(entry(i, j, False) for j in range(n)) for i in range(n)) + "])")
    return tex, text
