"""Stage 1, spec: what the user wrote, parsed and checked, as one description.

A model is written either as one lme4-style mixed formula or as level-1 and
level-2 equations. Both become the same :class:`ModelSpec`; the formula is its
canonical text. Nothing here looks at data or imports PyMC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ArgumentError, SpecError

__all__ = ["Family", "FAMILIES", "LINKS", "family_of", "RandomBlock", "ModelSpec", "parse_formula", "spec_from_levels",
           "rhs_terms"]


@dataclass(frozen=True)
class Family:
    """An outcome distribution and its link.

    Attributes
    ----------
    name : str
        "gaussian", "student", "bernoulli", "binomial", "poisson",
        "negbinomial" or "cumulative".
    link : str
        "identity", "logit", "log" or "probit".
    has_sigma : bool
        Whether the family has a residual scale sigma (gaussian, student).
    """

    name: str
    link: str
    has_sigma: bool


FAMILIES = {
    "gaussian": Family("gaussian", "identity", True),
    "student": Family("student", "identity", True),
    "bernoulli": Family("bernoulli", "logit", False),
    "binomial": Family("binomial", "logit", False),
    "poisson": Family("poisson", "log", False),
    "negbinomial": Family("negbinomial", "log", False),
    "cumulative": Family("cumulative", "logit", False),
}

LINKS = {name: (fam.link,) for name, fam in FAMILIES.items()} | {"cumulative": ("logit", "probit")}
"""The links each family takes, its default first."""


def family_of(family: str, link: str | None = None) -> Family:
    """The family named, with its default link or the ``link`` asked for.

    Examples
    --------
    >>> family_of("cumulative", "probit")
    Family(name='cumulative', link='probit', has_sigma=False)
    """
    if not isinstance(family, str) or family not in FAMILIES:
        raise SpecError(f"Unknown family {family!r}. Valid families: {', '.join(FAMILIES)}.")
    if link is None or link == FAMILIES[family].link:
        return FAMILIES[family]
    if link not in LINKS[family]:
        raise SpecError(f"family='{family}' takes the link(s) {', '.join(map(repr, LINKS[family]))}; got link={link!r}.")
    return Family(family, link, FAMILIES[family].has_sigma)


@dataclass(frozen=True)
class RandomBlock:
    """One bar term ``(expr | group)``: random effects that share a covariance.

    Attributes
    ----------
    expr : str
        The left of the bar, e.g. ``"1 + smu"`` (an intercept is implied unless
        the expression has ``0 +`` or ``- 1``, as in lme4).
    group : str
        The grouping factor: a column, or ``"a:b"`` for the interaction of two.
    correlated : bool
        True for ``|`` with two or more terms (LKJ prior on their correlation);
        ``||`` is split into one uncorrelated block per term by the parser.
    """

    expr: str
    group: str
    correlated: bool = True

    def text(self) -> str:
        """The block as lme4 writes it, e.g. ``(1 + smu | country)``."""
        return f"({self.expr} | {self.group})"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model: response, fixed part, random blocks and family.

    Attributes
    ----------
    response : str
        The outcome column, or ``cbind(successes, failures)`` for binomial.
    fixed : str
        The fixed-effects right-hand side, e.g. ``"1 + smu"``.
    random : tuple of RandomBlock
        The random-effect blocks in the order written.
    family : Family
        Outcome distribution and link.
    """

    response: str
    fixed: str
    random: tuple[RandomBlock, ...]
    family: Family

    @property
    def formula(self) -> str:
        """The combined mixed formula in canonical lme4 text."""
        parts = [self.fixed] + [b.text() for b in self.random]
        return f"{self.response} ~ " + " + ".join(parts)

    @property
    def groups(self) -> tuple[str, ...]:
        """The grouping factors, each once, in the order first written."""
        return tuple(dict.fromkeys(b.group for b in self.random))

    def resolve_group(self, group: str | None) -> str:
        """The grouping factor named, or the only one when ``group`` is None.

        Examples
        --------
        >>> parse_formula("y ~ x + (1 | g)").resolve_group(None)
        'g'
        """
        if group is None:
            if len(self.groups) > 1:
                raise ArgumentError(f"This model has several grouping factors ({', '.join(self.groups)}); "
                                    "pass factor= one of them.")
            return self.groups[0]
        if group not in self.groups:
            raise ArgumentError(f"Unknown grouping factor {group!r}. This model's factors: {', '.join(self.groups)}.")
        return group

    def factor(self, group: str | None = None) -> str:
        """The grouping factor named, or the first one written when ``group`` is None.

        What tables and plots of one factor default to; an unknown name is an
        :class:`~bayesmlm.errors.ArgumentError` that lists the factors.

        Examples
        --------
        >>> spec = parse_formula("y ~ 1 + (1 | school/class)")
        >>> spec.factor(), spec.factor("school:class")
        ('school', 'school:class')
        """
        return self.resolve_group(self.groups[0] if group is None else group)


def _split_top(text: str, sep: str, formula: str, offset: int) -> list[tuple[str, int]]:
    """Split ``text`` at ``sep`` outside parentheses; keep each piece's offset."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SpecError(_point(formula, offset + i, "unmatched ')'"))
        elif ch == sep and depth == 0:
            pieces.append((text[start:i], offset + start))
            start = i + 1
    if depth != 0:
        raise SpecError(_point(formula, offset + text.rfind("("), "unclosed '('"))
    pieces.append((text[start:], offset + start))
    return pieces


def _point(formula: str, pos: int, what: str) -> str:
    """An error message with a caret under the offending place."""
    return f"Formula syntax error: {what}.\n  {formula}\n  {' ' * max(pos, 0)}^"


_IDENT = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]*$")
_CBIND = re.compile(r"^cbind\(\s*([A-Za-z_.][\w.]*)\s*,\s*([A-Za-z_.][\w.]*)\s*\)$")


def _parse_bar(term: str, formula: str, offset: int) -> list[RandomBlock]:
    inner = term.strip()[1:-1]
    double = "||" in inner
    sep = "||" if double else "|"
    if inner.count(sep) != 1 or (not double and "||" in inner):
        raise SpecError(_point(formula, offset, "a random term needs exactly one '|' or '||', as in (1 + x | g)"))
    expr, group = (s.strip() for s in inner.split(sep))
    if not expr:
        raise SpecError(_point(formula, offset, "nothing left of '|'; write (1 | g) for a random intercept"))
    if not group:
        raise SpecError(_point(formula, offset + len(term) - 1, "no grouping factor right of '|'"))
    groups = _expand_group(group, formula, offset)
    blocks = []
    for g in groups:
        if double:
            blocks.extend(RandomBlock(t, g, False) for t in _uncorrelated_terms(expr))
        else:
            blocks.append(RandomBlock(_normalise_rhs(expr), g, _n_terms(expr) > 1))
    return blocks


def _expand_group(group: str, formula: str, offset: int) -> list[str]:
    """``a/b`` is lme4's nesting: ``a`` and ``a:b``."""
    parts = [p.strip() for p in group.split("/")]
    for p in parts:
        for name in p.split(":"):
            if not _IDENT.match(name.strip()):
                raise SpecError(_point(formula, offset, f"grouping factor '{p}' must be a column name (or a:b, a/b)"))
    return [":".join(n.strip() for n in ":".join(parts[: i + 1]).split(":")) for i in range(len(parts))]


def rhs_terms(expr: str) -> tuple[bool, list[str]]:
    """(has intercept, non-intercept terms) of a simple ``+``-separated expression.

    Examples
    --------
    >>> rhs_terms("0 + x + w")
    (False, ['x', 'w'])
    """
    intercept, terms = True, []
    text = expr.replace("-1", "+ -1").replace("- 1", "+ -1")
    for raw in text.split("+"):
        t = raw.strip()
        if t in ("0", "-1"):
            intercept = False
        elif t == "1":
            intercept = True
        elif t:
            terms.append(t)
    return intercept, terms


def _n_terms(expr: str) -> int:
    intercept, terms = rhs_terms(expr)
    return int(intercept) + len(terms)


def _normalise_rhs(expr: str) -> str:
    intercept, terms = rhs_terms(expr)
    return " + ".join(["1" if intercept else "0"] + terms)


def _uncorrelated_terms(expr: str) -> list[str]:
    intercept, terms = rhs_terms(expr)
    return (["1"] if intercept else []) + [f"0 + {t}" for t in terms]


def parse_formula(formula: str, family: str = "gaussian", link: str | None = None) -> ModelSpec:
    """Parse an lme4-style mixed formula.

    Parameters
    ----------
    formula : str
        ``response ~ fixed + (expr | group) + ...``. ``||`` gives uncorrelated
        random effects; ``(1 | a/b)`` nests ``b`` in ``a``.
    family : str
        One of :data:`FAMILIES`.
    link : str, optional
        One of the family's :data:`LINKS` (default: its first).

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> parse_formula("rating ~ temp + (1 | judge)", "cumulative", link="probit").family.link
    'probit'
    >>> spec = parse_formula("tech ~ smu + (1 + smu | country)")
    >>> spec.formula
    'tech ~ 1 + smu + (1 + smu | country)'
    >>> [b.correlated for b in parse_formula("y ~ x + (1 + x || g)").random]
    [False, False]
    """
    fam = family_of(family, link)
    if not isinstance(formula, str) or "~" not in formula:
        raise SpecError(f"A formula needs '~' between the outcome and the predictors, as in 'y ~ x + (1 | g)'; got {formula!r}.")
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not response:
        raise SpecError(_point(formula, 0, "no outcome left of '~'"))
    if not (_IDENT.match(response) or _CBIND.match(response)):
        raise SpecError(_point(formula, 0, f"the outcome '{response}' must be a column name or cbind(successes, failures)"))
    if _CBIND.match(response) and family != "binomial":
        raise SpecError("cbind(successes, failures) is for family='binomial'.")
    offset = len(lhs) + 1
    fixed_parts, blocks = [], []
    for piece, pos in _split_top(rhs, "+", formula, offset):
        stripped = piece.strip()
        if not stripped:
            raise SpecError(_point(formula, pos, "empty term (two '+' in a row, or a trailing '+')"))
        if stripped.startswith("(") and stripped.endswith(")") and "|" in stripped:
            blocks.extend(_parse_bar(stripped, formula, pos + piece.find("(")))
        elif "|" in stripped:
            raise SpecError(_point(formula, pos + piece.find("|"), "'|' outside parentheses; write random terms as (1 + x | g)"))
        else:
            fixed_parts.append(stripped)
    fixed = _normalise_fixed(" + ".join(fixed_parts))
    if not blocks:
        raise SpecError(f"The formula {formula.strip()!r} has no random term such as (1 | g): bayesmlm fits multilevel "
                        "models, whose coefficients vary by group. Add a random term, e.g. '... + (1 | group)'; for a "
                        "regression without groups use a plain regression tool (bambi.Model(formula, data) for a "
                        "Bayesian one, statsmodels.formula.api.ols or glm for a frequentist one).")
    _check_outcome_not_predictor(formula, response, fixed, blocks)
    return ModelSpec(response, fixed, tuple(blocks), fam)


def _names_read(expr: str) -> set[str]:
    """Identifiers an expression reads as columns: not function names (``log(``), nor string literals."""
    text = re.sub(r"(['\"]).*?\1", "''", expr)
    return {m.group(0) for m in re.finditer(r"[A-Za-z_.][\w.]*", text) if not text[m.end():].lstrip().startswith("(")}


def _check_outcome_not_predictor(formula: str, response: str, fixed: str, blocks: list[RandomBlock]) -> None:
    """The outcome cannot also be a predictor or a grouping factor: the model would explain y by itself."""
    m = _CBIND.match(response)
    outcomes = set(m.groups()) if m else {response}
    for where, expr in [("fixed part", fixed), *((f"random term {b.text()}", b.expr) for b in blocks),
                        *((f"grouping factor of {b.text()}", b.group.replace(":", " + ")) for b in blocks)]:
        both = sorted(outcomes & _names_read(expr))
        if both:
            raise SpecError(f"The outcome '{both[0]}' is also in the {where} of {formula.strip()!r}: a model that "
                            f"explains '{both[0]}' by itself is not identified. Remove '{both[0]}' from the right of '~' "
                            "(for an earlier measurement of the outcome, use its own column, e.g. a lagged copy).")


def _normalise_fixed(rhs: str) -> str:
    """Make the intercept explicit: ``"smu"`` -> ``"1 + smu"``."""
    if not rhs:
        return "1"
    terms = [t.strip() for t in rhs.split("+")]
    if terms[0] in ("0", "1") or any(t in ("-1", "- 1") or t.endswith("- 1") for t in terms):
        return rhs
    return "1 + " + rhs


def spec_from_levels(level1: str, level2: dict | None, group: str, *, fixed=(), family: str = "gaussian",
                     link: str | None = None) -> ModelSpec:
    """Combine level-1 and level-2 equations into one mixed model.

    Substitutes each level-2 equation into the level-1 equation, as in
    Raudenbush and Bryk: ``b_kj = gamma_k0 + gamma_k1 W_j + u_kj`` times the
    level-1 predictor ``X_k`` gives the fixed terms ``X_k`` and ``X_k:W`` (a
    cross-level interaction) and a random ``X_k`` by ``group``.

    Parameters
    ----------
    level1 : str
        ``"y ~ 1 + x"``: the outcome and the level-1 predictors.
    level2 : dict, optional
        Level-1 term (``"1"`` for the intercept) to a right-hand side of
        group-level predictors, e.g. ``{"1": "~ 1 + w", "x": "~ 1 + w"}``.
        A level-1 term left out gets ``"~ 1"``.
    group : str
        The level-2 grouping column.
    fixed : sequence of str
        Level-1 terms whose coefficient does not vary by group (no ``u_kj``).
    family : str
        One of :data:`FAMILIES`.
    link : str, optional
        One of the family's :data:`LINKS`.

    Examples
    --------
    >>> spec_from_levels("y ~ 1 + x", {"1": "~ 1 + w", "x": "~ 1 + w"}, "g").formula
    'y ~ 1 + w + x + x:w + (1 + x | g)'
    """
    if not isinstance(level1, str) or "~" not in level1:
        raise SpecError(f"level1 needs '~', as in 'y ~ 1 + x'; got {level1!r}.")
    if level2 is not None and not isinstance(level2, Mapping):
        raise SpecError(f"level2 maps level-1 terms to level-2 equations, e.g. {{'1': '~ 1 + w', 'x': '~ 1 + w'}}; got a "
                        f"{type(level2).__name__}.")
    if not isinstance(group, str):
        raise SpecError(f"group names the level-2 grouping column (a str); got {group!r}.")
    if isinstance(fixed, str) or not all(isinstance(t, str) for t in fixed):
        raise SpecError(f"fixed is a list of level-1 terms, e.g. fixed=['x']; got {fixed!r}.")
    response, rhs = (s.strip() for s in level1.split("~", 1))
    if "|" in rhs:
        raise SpecError("level1 holds level-1 predictors only; random effects follow from level2 and group.")
    intercept, l1_terms = rhs_terms(rhs)
    names = (["1"] if intercept else []) + l1_terms
    level2 = dict(level2 or {})
    unknown = set(level2) - set(names)
    if unknown:
        raise SpecError(f"level2 has equations for {sorted(unknown)}, which are not level-1 terms. Level-1 terms: {names}.")
    bad_fixed = set(fixed) - set(names)
    if bad_fixed:
        raise SpecError(f"fixed names {sorted(bad_fixed)}, which are not level-1 terms. Level-1 terms: {names}.")
    fixed_terms, random_terms = [], []
    for name in names:
        eq = level2.get(name, "~ 1").strip()
        if "|" in eq:
            raise SpecError(f"level2['{name}'] should hold group-level predictors only, e.g. '~ 1 + w'.")
        w_intercept, w_terms = rhs_terms(eq.lstrip("~"))
        for w in (["1"] if w_intercept else []) + w_terms:
            if name == "1":
                fixed_terms.append(w)
            else:
                fixed_terms.append(name if w == "1" else f"{name}:{w}")
        if name not in fixed:
            random_terms.append(name)
    if not intercept:
        fixed_terms.insert(0, "0")
    rand = ""
    if random_terms:
        expr = " + ".join(random_terms if "1" in random_terms else ["0"] + random_terms)
        rand = f" + ({expr} | {group})"
    if not random_terms:
        raise SpecError("Every level-1 term is marked fixed: a multilevel model needs at least one random term.")
    return parse_formula(f"{response} ~ {' + '.join(fixed_terms)}{rand}", family, link)
