"""Three-level models written as level equations (pupils i in classes j in schools k).

Raudenbush and Bryk's notation (Hierarchical Linear Models, 2nd ed., ch. 8):

    Level 1:  Y_ijk  = pi_0jk + pi_1jk a_ijk + ... + e_ijk
    Level 2:  pi_pjk = beta_p0k + beta_p1k X_jk + ... + r_pjk
    Level 3:  beta_pqk = gamma_pq0 + gamma_pq1 W_k + ... + u_pqk

Substituting upwards gives one mixed model. Each level-1 term ``a_p`` times
each class-level predictor ``X_q`` of its level-2 equation is a coefficient
that may vary across schools; it is named as lme4 names the product term:
``"1"`` (beta_00, the intercept), ``"ses"`` (beta_10), ``"size"`` (beta_01),
``"ses:size"`` (beta_11). Its level-3 equation adds the fixed terms
``coefficient:W_s`` (cross-level interactions) and, unless it is fixed at the
school level, a random ``coefficient`` by school. The class effects are
grouped by ``school:class``, so class labels may repeat across schools.
Nothing here looks at data or imports PyMC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..errors import SpecError
from .formula import ModelSpec, parse_formula, rhs_terms

__all__ = ["spec_from_three_levels", "product_name"]


def product_name(a: str, b: str) -> str:
    """The lme4 name of the product of two terms, ``"1"`` being the constant.

    Examples
    --------
    >>> product_name("1", "size"), product_name("ses", "1"), product_name("ses", "size")
    ('size', 'ses', 'ses:size')
    """
    if a == "1":
        return b
    return a if b == "1" else f"{a}:{b}"


def _equation_terms(eq: str, where: str) -> list[str]:
    if not isinstance(eq, str):
        raise SpecError(f"{where} should be a right-hand side such as '~ 1 + w'; got {eq!r}.")
    if "|" in eq:
        raise SpecError(f"{where} should hold predictors of that level only, e.g. '~ 1 + w'; random effects follow "
                        "from group and fixed.")
    intercept, terms = rhs_terms(eq.strip().lstrip("~"))
    return (["1"] if intercept else []) + terms


def _fixed_by_level(fixed, school: str, klass: str) -> tuple[set, set]:
    if isinstance(fixed, Mapping):
        unknown = set(fixed) - {school, klass}
        if unknown:
            raise SpecError(f"fixed is keyed by grouping factor; {sorted(unknown)} is not one. Use "
                            f"fixed={{'{klass}': [level-1 terms], '{school}': [level-2 coefficients]}}.")
        out = []
        for key in (klass, school):
            terms = fixed.get(key, ())
            if isinstance(terms, str) or not all(isinstance(t, str) for t in terms):
                raise SpecError(f"fixed['{key}'] is a list of terms, e.g. ['ses']; got {terms!r}.")
            out.append(set(terms))
        return out[0], out[1]
    if fixed:
        raise SpecError(f"With three levels, say at which level a coefficient is fixed: fixed={{'{klass}': [...], "
                        f"'{school}': [...]}} (level-1 terms without a class effect; level-2 coefficients, such as "
                        f"'1' or 'ses', without a school effect); got {fixed!r}.")
    return set(), set()


def spec_from_three_levels(level1: str, level2: dict | None, level3: dict | None, group: Sequence[str], *,
                           fixed=None, family: str = "gaussian", link: str | None = None) -> ModelSpec:
    """Combine level-1, level-2 and level-3 equations into one mixed model.

    Parameters
    ----------
    level1 : str
        ``"y ~ 1 + ses"``: the outcome and the level-1 (pupil) predictors.
    level2 : dict, optional
        Level-1 term (``"1"`` for the intercept) to a right-hand side of
        class-level predictors: ``{"1": "~ 1 + size"}``. A term left out gets ``"~ 1"``.
    level3 : dict, optional
        Level-2 coefficient (``"1"``, ``"size"``, ``"ses"``, ``"ses:size"``: the
        names of the products, see the module) to a right-hand side of
        school-level predictors: ``{"1": "~ 1 + sector"}``. Left out: ``"~ 1"``.
    group : (str, str)
        The school and the class column, outermost first, as in ``(1 | school/class)``.
    fixed : dict, optional
        ``{class: [level-1 terms without a class effect r_pjk], school:
        [level-2 coefficients without a school effect u_pqk]}``. Every other
        coefficient is random at its level.
    family : str
    link : str, optional
        As for :func:`bayesmlm.spec.formula.parse_formula`.

    Examples
    --------
    >>> spec_from_three_levels("y ~ 1 + ses", {"1": "~ 1 + size"}, {"1": "~ 1 + sector"}, ("school", "class"),
    ...                        fixed={"class": ["ses"], "school": ["size", "ses"]}).formula
    'y ~ 1 + sector + size + ses + (1 | school) + (1 | school:class)'
    """
    if isinstance(group, str) or len(group) != 2 or not all(isinstance(g, str) for g in group):
        raise SpecError(f"group for three levels is (school, class), outermost first, e.g. group=('school', 'class'); "
                        f"got {group!r}.")
    school, klass = group
    if not isinstance(level1, str) or "~" not in level1:
        raise SpecError(f"level1 needs '~', as in 'y ~ 1 + x'; got {level1!r}.")
    for name, eqs in (("level2", level2), ("level3", level3)):
        if eqs is not None and not isinstance(eqs, Mapping):
            raise SpecError(f"{name} maps terms to equations, e.g. {{'1': '~ 1 + w'}}; got a {type(eqs).__name__}.")
    response, rhs = (s.strip() for s in level1.split("~", 1))
    if "|" in rhs:
        raise SpecError("level1 holds level-1 predictors only; random effects follow from group and fixed.")
    intercept, l1 = rhs_terms(rhs)
    level1_terms = (["1"] if intercept else []) + l1
    level2, level3 = dict(level2 or {}), dict(level3 or {})
    fixed_class, fixed_school = _fixed_by_level(fixed, school, klass)
    if set(level2) - set(level1_terms):
        raise SpecError(f"level2 has equations for {sorted(set(level2) - set(level1_terms))}, which are not level-1 "
                        f"terms. Level-1 terms: {level1_terms}.")
    if fixed_class - set(level1_terms):
        raise SpecError(f"fixed['{klass}'] names {sorted(fixed_class - set(level1_terms))}, which are not level-1 "
                        f"terms. Level-1 terms: {level1_terms}.")
    coefficients = [product_name(p, q) for p in level1_terms
                    for q in _equation_terms(level2.get(p, "~ 1"), f"level2['{p}']")]
    for where, names in ((f"level3", set(level3)), (f"fixed['{school}']", fixed_school)):
        if names - set(coefficients):
            raise SpecError(f"{where} names {sorted(names - set(coefficients))}, which are not level-2 coefficients. "
                            f"Level-2 coefficients (level-1 term times class-level predictor): {coefficients}.")
    fixed_terms = [product_name(c, s) for c in coefficients
                   for s in _equation_terms(level3.get(c, "~ 1"), f"level3['{c}']")]
    if "1" not in fixed_terms:
        fixed_terms.insert(0, "0")
    school_random = [c for c in coefficients if c not in fixed_school]
    class_random = [p for p in level1_terms if p not in fixed_class]
    if not school_random and not class_random:
        raise SpecError("Every coefficient is marked fixed: a multilevel model needs at least one random term.")
    blocks = [f"({_random_expr(terms)} | {g})" for terms, g in ((school_random, school), (class_random,
                                                                 f"{school}:{klass}")) if terms]
    return parse_formula(f"{response} ~ {' + '.join(fixed_terms)} + {' + '.join(blocks)}", family, link)


def _random_expr(terms: list[str]) -> str:
    return " + ".join(terms if "1" in terms else ["0", *terms])
