"""Stage 2, design: data checks and design matrices for a ModelSpec.

Turns a :class:`~bayesmlm.spec.formula.ModelSpec` and a DataFrame into plain arrays:
the outcome, the fixed-effects matrix X with lme4's term names, one Z matrix
per random block, and an integer index per grouping factor. Every check on
the data lives here, so that later stages can trust what they get. Nothing
here imports PyMC.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from formulae import design_matrices
from formulae.environment import Environment

from ..errors import DataError, SeparationWarning, SpecError
from ..spec.formula import ModelSpec
from .data_checks import (
    check_column_types,
    check_columns,
    check_finite,
    check_numeric_outcome,
    check_outcome_varies,
    check_weight_sum,
    check_weights,
    drop_missing,
    model_columns,
    predictor_columns,
    response_columns,
)

__all__ = ["GroupingFactor", "BlockDesign", "Design", "build_design", "assemble_design", "centring", "split_offset", "offset_column",
           "lme4_name", "group_labels", "outcome_arrays", "drop_intercept", "ordinal_outcome"]


@dataclass(frozen=True, eq=False)
class GroupingFactor:
    """A grouping column: its levels (as strings) and each row's level index."""

    name: str
    levels: tuple[str, ...]
    index: np.ndarray

    @property
    def n_levels(self) -> int:
        """Number of groups."""
        return len(self.levels)


@dataclass(frozen=True, eq=False)
class BlockDesign:
    """One random block: the columns of Z that share a covariance matrix.

    ``label`` is the block's name in tables: the grouping factor, with ``.1``,
    ``.2`` appended for a second and third block on the same factor (as
    lme4's ``as.data.frame(VarCorr())`` does).
    """

    label: str
    group: str
    terms: tuple[str, ...]
    correlated: bool
    Z: np.ndarray
    Z_matrix: object = field(default=None, repr=False)

    @property
    def q(self) -> int:
        """Number of random terms in the block."""
        return len(self.terms)

    @property
    def z_means(self) -> np.ndarray:
        """Z's column means over the data's rows (where a centred block's intercept sits)."""
        return self.Z.mean(axis=0)

    @property
    def expr_text(self) -> str:
        """The block as lme4 writes it, e.g. ``(1 + Days | Subject)``."""
        return f"({' + '.join('1' if t == '(Intercept)' else t for t in self.terms)} | {self.group})"


@dataclass(frozen=True, eq=False)
class Design:
    """Everything the later stages need to know about the data.

    Attributes
    ----------
    spec : ModelSpec
    data : DataFrame
        The model's columns, rows with missing values removed.
    y : ndarray (N,)
    X : ndarray (N, p)
    fixed_terms : tuple of str
        lme4 names of X's columns, e.g. ``"(Intercept)"``, ``"sectorPublic"``.
    fixed_labels : tuple of str
        The same columns as formulae labels them, e.g. ``"sector[Public]"``.
    blocks : tuple of BlockDesign
    factors : dict of str to GroupingFactor
    level2 : dict of str to frozenset
        Per grouping factor, the data columns that are constant within its
        groups (group-level predictors).
    rows_dropped : int
        Rows removed for missing values, as lme4's na.omit does.
    trials : ndarray or None
        Binomial trials per row.
    offset : ndarray or None
        Offset on the link scale per row: the ``offset=`` column plus any
        ``offset(...)`` terms of the formula.
    options : dict
        The column names given as ``trials=``, ``offset=`` and ``weights=`` (or None).
    fixed_matrix : formulae CommonTerms or None
        The fixed part's formulae design, for evaluating new data (see
        :func:`new_data_design`); ``offset(...)`` terms included.
    success : str or None
        For a bernoulli outcome written as two labels, the label coded 1.
    categories : tuple of str or None
        For a cumulative (ordinal) outcome, its categories from lowest to
        highest; ``y`` holds each row's category as 0, 1, ..., K - 1.
    has_rows : bool
        False for a design whose rows were reduced to per-group sums
        (:class:`bayesmlm.fastpath.readers.SummaryDesign`): its ``data``,
        ``X`` and ``Z`` then hold representative rows only, not data to
        fit, plot or predict. Check it with :meth:`require_rows`.
    weights : ndarray or None
        The ``weights=`` column per row (0 or more): gaussian precision
        weights (the residual variance of row i is sigma^2 / w_i, as lme4's),
        or likelihood weights of the other families (row i's log-likelihood
        times w_i, as brms's ``weights()``). A row of weight 0 drops out of
        the likelihood. None: unweighted.
    """

    spec: ModelSpec
    data: pd.DataFrame
    y: np.ndarray
    X: np.ndarray
    fixed_terms: tuple[str, ...]
    fixed_labels: tuple[str, ...]
    blocks: tuple[BlockDesign, ...]
    factors: dict
    level2: dict
    rows_dropped: int = 0
    trials: np.ndarray | None = None
    offset: np.ndarray | None = None
    options: dict = field(default_factory=dict)
    fixed_matrix: object = field(default=None, repr=False)
    success: str | None = None
    has_rows: bool = True
    weights: np.ndarray | None = None
    categories: tuple[str, ...] | None = None

    def require_rows(self, what: str, instead: str = "") -> None:
        """Refuse, naming ``what``, a design that keeps no rows (see ``has_rows``).

        Examples
        --------
        >>> import bayesmlm
        >>> m = bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy"))
        >>> m.design.require_rows("shrinkage()")  # has rows: nothing happens
        """
        if not self.has_rows:
            raise ValueError(f"{what} needs the fitted rows, and this model was made from per-group sums "
                             f"(MLM.from_files or MLM.from_dask), which keep no rows. "
                             + (instead or "Build the model from a DataFrame, MLM(formula, data), for this."))

    @property
    def n_obs(self) -> int:
        """Number of rows used."""
        return len(self.y)

    @property
    def has_intercept(self) -> bool:
        """Whether X has lme4's ``(Intercept)`` column."""
        return "(Intercept)" in self.fixed_terms

    @property
    def x_centre(self) -> np.ndarray:
        """X's column means (weighted means, with weights), 0 for the intercept (:func:`centring`).

        Examples
        --------
        >>> import bayesmlm
        >>> bayesmlm.MLM("Reaction ~ Days + (1 | Subject)", bayesmlm.datasets.load("sleepstudy")).design.x_centre.tolist()
        [0.0, 4.5]
        """
        if self.weights is not None:
            return centring(self.fixed_terms, self.weights @ self.X / self.weights.sum())
        return centring(self.fixed_terms, self.X.mean(axis=0))

    @property
    def model_centre(self) -> np.ndarray:
        """Where the full model centres X's columns: :attr:`x_centre`, or for a cumulative model X's plain means.

        A cumulative model has no intercept; its thresholds absorb the shift
        (they are sampled for the centred X). Centred blocks' means
        (:func:`bayesmlm.design.block_means.block_means`) use the same centre, so
        that a fixed column a block absorbs leaves the likelihood.

        Examples
        --------
        >>> import bayesmlm
        >>> wine = bayesmlm.datasets.load("wine")
        >>> bayesmlm.MLM("rating ~ temp + contact + (1 | judge)", wine, family="cumulative").design.model_centre.tolist()
        [0.5, 0.5]
        """
        if self.spec.family.name == "cumulative":
            return self.X.mean(axis=0)
        return self.x_centre

    def random_terms(self, factor: str) -> tuple[str, ...]:
        """The random terms of one grouping factor, across its blocks."""
        return tuple(t for b in self.blocks if b.group == factor for t in b.terms)


def centring(fixed_terms: tuple[str, ...], column_means) -> np.ndarray:
    """Where X's columns are centred: their means, 0 for the intercept; all 0 without an intercept.

    Centring moves the intercept's prior to the outcome at the predictors'
    means; without an intercept there is nothing to absorb the shift.

    Examples
    --------
    >>> centring(("(Intercept)", "x"), [1.0, 4.5]).tolist(), centring(("x",), [4.5]).tolist()
    ([0.0, 4.5], [0.0])
    """
    means = np.asarray(column_means, dtype=float)
    if "(Intercept)" not in fixed_terms:
        return np.zeros(len(fixed_terms))
    return np.where([t != "(Intercept)" for t in fixed_terms], means, 0.0)


_BRACKET = re.compile(r"([^\[\]:]+)\[([^\]]+)\]")
_ENV = Environment([{"np": np, "numpy": np}])


def lme4_name(label: str) -> str:
    """Translate a formulae column label to lme4's term name.

    Examples
    --------
    >>> lme4_name("sector[Public]:cses")
    'sectorPublic:cses'
    >>> lme4_name("Intercept")
    '(Intercept)'
    """
    if label == "Intercept":
        return "(Intercept)"
    return _BRACKET.sub(lambda m: m.group(1) + m.group(2), label)


def _lme4_terms(labels: tuple[str, ...], rhs: str, columns) -> tuple[str, ...]:
    """lme4's names: interaction parts in the order their variables first appear.

    R writes ``sector * cses`` after ``meanses * cses`` as ``cses:sectorPublic``,
    because ``cses`` appears in the formula before ``sector``.
    """
    order = {}
    for name in re.findall(r"[A-Za-z_.][\w.]*", rhs):
        if name in columns:
            order.setdefault(name, len(order))

    def rank(component: str) -> int:
        found = [order[n] for n in re.findall(r"[A-Za-z_.][\w.]*", component) if n in order]
        return min(found) if found else len(order)

    names = []
    for label in labels:
        parts = re.split(r":(?![^\[]*\])", label)
        names.append(lme4_name(":".join(sorted(parts, key=rank))))
    return tuple(names)


def outcome_arrays(spec: ModelSpec, data: pd.DataFrame, trials: str | None) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """The outcome vector, binomial trials, and (bernoulli labels) the label coded 1; bad values are refused by column.

    Examples
    --------
    >>> import pandas as pd
    >>> from bayesmlm.spec.formula import parse_formula
    >>> y, n, _ = outcome_arrays(parse_formula("cbind(s, f) ~ 1 + (1 | g)", "binomial"), pd.DataFrame({"s": [1], "f": [2]}), None)
    >>> y.tolist(), n.tolist()
    ([1.0], [3.0])
    """
    cols = response_columns(spec)
    family = spec.family.name
    if trials is not None and family != "binomial":
        raise SpecError(f"trials='{trials}' is for family='binomial'; this model's family is '{family}'. Drop trials=, "
                        "or use family='binomial'.")
    if family in ("gaussian", "student"):
        return check_numeric_outcome(data[cols[0]]), None, None
    if family == "cumulative":
        return ordinal_outcome(data[cols[0]])[0], None, None
    if family == "bernoulli":
        y, success = _bernoulli(data[cols[0]])
        return y, None, success
    if family in ("poisson", "negbinomial"):
        return _counts(data[cols[0]], "outcome", f"a {family} model needs counts (0, 1, 2, and so on)"), None, None
    if len(cols) == 2:
        if trials is not None:
            raise SpecError(f"The outcome cbind({cols[0]}, {cols[1]}) already gives the trials (successes + failures); "
                            f"drop trials='{trials}'.")
        succ = _counts(data[cols[0]], "successes column", "cbind(successes, failures) needs counts")
        fail = _counts(data[cols[1]], "failures column", "cbind(successes, failures) needs counts")
        return succ, succ + fail, None
    if trials is None:
        raise SpecError(f"family='binomial' needs the number of trials: write the outcome as cbind(successes, failures), "
                        f"or pass trials='<column>' with '{cols[0]}' as the successes. For one yes/no outcome per row "
                        "use family='bernoulli'.")
    succ = _counts(data[cols[0]], "outcome", "a binomial outcome counts successes")
    n = _counts(data[trials], "trials column", "trials= counts the attempts per row")
    over = succ > n
    if over.any():
        i = int(np.argmax(over))
        raise DataError(f"The outcome '{cols[0]}' exceeds the trials column '{trials}' in {int(over.sum())} row(s) "
                        f"(first at row {i}: {succ[i]:g} of {n[i]:g}). Successes must lie between 0 and the trials.")
    return succ, n, None


def _counts(col: pd.Series, what: str, need: str) -> np.ndarray:
    """Non-negative integers as floats; errors name the column."""
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"The {what} '{col.name}' is {col.dtype}: {need}. Convert it to integers.")
    x = col.to_numpy(dtype=float)
    bad = (x < 0) | (x != np.round(x))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"The {what} '{col.name}' has {int(bad.sum())} value(s) that are not non-negative integers "
                        f"(first at row {i}: {x[i]:g}); {need}.")
    return x


def ordinal_outcome(col: pd.Series) -> tuple[np.ndarray, tuple[str, ...]]:
    """An ordinal outcome as category codes 0..K-1, and its categories from lowest to highest.

    An ordered pandas Categorical keeps its declared order; integers are
    taken in their numeric order (the distinct values seen, so a rating
    scale with an unused value has one category fewer). Anything else is
    refused, naming the column.

    Examples
    --------
    >>> import pandas as pd
    >>> y, cats = ordinal_outcome(pd.Series([3, 1, 2, 3], name="rating"))
    >>> y.tolist(), cats
    ([2.0, 0.0, 1.0, 2.0], ('1', '2', '3'))
    """
    name = col.name
    if isinstance(col.dtype, pd.CategoricalDtype):
        if not col.cat.ordered:
            raise DataError(f"The outcome '{name}' is an unordered Categorical: a cumulative (ordinal) model needs the "
                            f"categories' order. Make it ordered, e.g. data['{name}'] = data['{name}'].cat.as_ordered() "
                            "(the categories' listed order, lowest first), or pass integers.")
        unused = [str(c) for c in col.cat.categories if not (col == c).any()]
        if unused:
            raise DataError(f"The outcome '{name}' has categories with no rows ({', '.join(unused)}): their thresholds "
                            f"would be set by the prior alone. Drop them, data['{name}'] = "
                            f"data['{name}'].cat.remove_unused_categories(), or merge them with a neighbour.")
        return col.cat.codes.to_numpy(dtype=float), tuple(str(c) for c in col.cat.categories)
    if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        raise DataError(f"The outcome '{name}' is {col.dtype}: a cumulative (ordinal) model needs an ordered "
                        f"Categorical or integers. Convert it, e.g. pd.Categorical(data['{name}'], categories=[...], "
                        "ordered=True).")
    x = col.to_numpy(dtype=float)
    bad = x != np.round(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"The outcome '{name}' has {int(bad.sum())} value(s) that are not integers (first at row {i}: "
                        f"{x[i]:g}); a cumulative model takes integers in their order, or an ordered Categorical.")
    values, codes = np.unique(x, return_inverse=True)
    return codes.astype(float), tuple(str(int(v)) for v in values)


def drop_intercept(M: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """A fixed design without its intercept column: a cumulative model's thresholds take its place.

    Examples
    --------
    >>> import numpy as np
    >>> M, labels = drop_intercept(np.array([[1.0, 2.0]]), ("Intercept", "x"))
    >>> M.tolist(), labels
    ([[2.0]], ('x',))
    """
    keep = [i for i, lab in enumerate(labels) if lab != "Intercept"]
    return M[:, keep], tuple(labels[i] for i in keep)


def _bernoulli(col: pd.Series) -> tuple[np.ndarray, str | None]:
    """0/1 outcome; a bool is True = 1; two labels: the later (sorted, or last category) is 1."""
    name = col.name
    if pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float), None
    if pd.api.types.is_numeric_dtype(col):
        x = col.to_numpy(dtype=float)
        bad = (x != 0) & (x != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"The outcome '{name}' has {int(bad.sum())} value(s) other than 0 and 1 (first at row {i}: "
                            f"{x[i]:g}); a bernoulli model needs 0/1. For counts use family='poisson'; for successes out "
                            "of several trials, family='binomial' with trials=.")
        return x, None
    if isinstance(col.dtype, pd.CategoricalDtype):
        levels = [c for c in col.cat.categories if (col == c).any()]
    else:
        levels = sorted(col.astype(str).unique())
        col = col.astype(str)
    if len(levels) != 2:
        shown = ", ".join(map(repr, levels[:6])) + (", ..." if len(levels) > 6 else "")
        raise DataError(f"The outcome '{name}' has {len(levels)} distinct label(s) ({shown}); a bernoulli model needs "
                        f"exactly two. Recode it, e.g. data['{name}'] = data['{name}'] == {levels[0]!r}.")
    return (col == levels[1]).to_numpy(dtype=float), str(levels[1])


def _categories_in_order(data: pd.DataFrame) -> pd.DataFrame:
    """Unordered Categoricals made ordered, so that formulae keeps their category order (the first is the reference
    level, as in R); formulae sorts the levels of an unordered one. Unused categories are dropped."""
    cats = [c for c in data.columns if isinstance(data[c].dtype, pd.CategoricalDtype) and not data[c].cat.ordered]
    if not cats:
        return data
    out = data.copy()
    for c in cats:
        out[c] = out[c].cat.remove_unused_categories().cat.as_ordered()
    return out


def _fixed_matrix(rhs: str, data: pd.DataFrame, what: str):
    try:
        dm = design_matrices(rhs, _categories_in_order(data), na_action="error", env=_ENV)
    except Exception as err:
        raise SpecError(f"Cannot build the {what} '{rhs}': {err}") from None
    if dm.common is None:
        return None, np.empty((len(data), 0)), ()
    frame = dm.common.as_dataframe()
    return dm.common, frame.to_numpy(dtype=float), tuple(frame.columns)


def split_offset(M: np.ndarray, labels: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...], np.ndarray | None]:
    """Take the ``offset(...)`` columns out of a fixed design; return their sum.

    Examples
    --------
    >>> import numpy as np
    >>> M, labels, off = split_offset(np.array([[1.0, 2.0]]), ("Intercept", "offset(log_n)"))
    >>> labels, off.tolist()
    (('Intercept',), [2.0])
    """
    is_off = np.array([lab.startswith("offset(") for lab in labels], dtype=bool)
    if not is_off.any():
        return M, labels, None
    return M[:, ~is_off], tuple(lab for lab, o in zip(labels, is_off) if not o), M[:, is_off].sum(axis=1)


def offset_column(data: pd.DataFrame, offset: str | None) -> np.ndarray | None:
    """The ``offset=`` column as floats (None without one); not numeric is refused, naming it.

    Examples
    --------
    >>> import pandas as pd
    >>> offset_column(pd.DataFrame({"log_n": [0.5]}), "log_n").tolist()
    [0.5]
    """
    if offset is None:
        return None
    col = data[offset]
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise DataError(f"The offset column '{offset}' is {col.dtype}, not numeric. An offset is on the link scale, "
                        "e.g. the log of the exposure for a poisson model.")
    return col.to_numpy(dtype=float)


def _check_columns_of(M: np.ndarray, names: tuple[str, ...], what: str) -> None:
    """Columns that are not finite, constant or collinear are errors, by name."""
    bad = ~np.isfinite(M)
    if bad.any():
        j = int(np.argmax(bad.any(axis=0)))
        i = int(np.argmax(bad[:, j]))
        raise DataError(f"The {what} term '{names[j]}' is {M[i, j]} in {int(bad[:, j].sum())} row(s) (first at row {i}): "
                        "a transform in the formula made values that are not finite (np.log of 0 or of a negative "
                        "number, say). Drop or recode those rows, or change the transform (e.g. np.log1p).")
    for j, name in enumerate(names):
        if name != "(Intercept)" and np.ptp(M[:, j]) == 0:
            raise DataError(f"The {what} term '{name}' is constant (every row is {M[0, j]:g}); it cannot be estimated. "
                            "Remove it from the formula.")
    # The Gram matrix has X's rank and is p x p, so this stays cheap for millions of rows.
    scale = np.maximum(np.abs(M).max(axis=0), 1e-300)
    G = (M / scale).T @ (M / scale)
    for j in range(1, M.shape[1]):
        eig = np.linalg.eigvalsh(G[: j + 1, : j + 1])
        if eig[0] <= 1e-10 * max(eig[-1], 1e-300):
            raise DataError(f"The {what} term '{names[j]}' is a linear combination of {list(names[:j])} (perfectly collinear). "
                            "Remove it or one of those terms.")


def group_labels(data: pd.DataFrame, group: str) -> pd.Series:
    """Each row's group label, as a string: the values joined by ':' for ``a:b``.

    Whole numbers are written without a decimal point whatever their dtype,
    so that a group read as 3 at fit time (int) and 3.0 in new data (a float
    column, say after a missing value) is the same group; other values as
    ``str`` writes them.

    Examples
    --------
    >>> import pandas as pd
    >>> group_labels(pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}), "a:b").tolist()
    ['1:x', '2:y']
    """
    cols = group.split(":")
    values = _labels(data[cols[0]])
    for c in cols[1:]:
        values = values + ":" + _labels(data[c])
    return values


def _labels(col: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(col.dtype):  # value by value, so that every chunk of a file reads alike
        x = col.to_numpy(dtype=float)
        whole = x == np.round(x)
        text = col.astype(str).to_numpy(dtype=object)
        text[whole] = x[whole].astype(np.int64).astype(str)
        return pd.Series(text, index=col.index, dtype=object)
    if pd.api.types.is_integer_dtype(col.dtype):
        return col.astype(np.int64).astype(str)  # nullable Int64 as plain integers
    return col.astype(str)


def _warn_separation(X: np.ndarray, names: tuple[str, ...], y: np.ndarray, trials: np.ndarray | None, response: str) -> None:
    """Warn when one predictor alone separates a logit model's outcome (complete or, for a 0/1 column, quasi-complete).

    With separation the likelihood keeps rising as the coefficient goes to
    infinity; the posterior is proper only through the prior, so the estimate
    is the prior's, not the data's (Gelman et al. 2008, Albert and Anderson 1984).
    """
    n = trials if trials is not None else np.ones_like(y)
    has_1, has_0 = y > 0, y < n
    for j, name in enumerate(names):
        if name == "(Intercept)":
            continue
        x = X[:, j]
        if np.isin(x, (0.0, 1.0)).all():
            on = x == 1
            where = [f"every row with {name} = 1 has {response} = {v}" for v, rows in ((0, has_1), (1, has_0))
                     if not rows[on].any()]
            where += [f"every row with {name} = 0 has {response} = {v}" for v, rows in ((0, has_1), (1, has_0))
                      if not rows[~on].any()]
        elif x[has_0].max() < x[has_1].min() or x[has_1].max() < x[has_0].min():
            where = [f"{response} = 1 exactly where {name} is {'above' if x[has_0].max() < x[has_1].min() else 'below'} "
                     "a cut-off"]
        else:
            continue
        if where:
            warnings.warn(f"The predictor '{name}' separates the outcome ({where[0]}): the data alone put its coefficient "
                          "at infinity, so its estimate is set by its prior (see model.priors()). Report it as such, set "
                          f"an informative prior on '{name}', or merge sparse categories.", SeparationWarning, stacklevel=6)


def _check_identified(spec: ModelSpec, factors: dict, blocks: list[BlockDesign], n_obs: int) -> None:
    """Refuse random effects the data cannot identify, before sampling (lme4's checkNlevels and checkZdims).

    - With a residual SD (or a 0/1 outcome): a factor with one row per group (its
      intercept is the residual); with a residual SD, no more rows than a block's
      random effects (counts with one row per group are fine: overdispersion);
    - a random slope on a variable constant within every group of a factor that
      also has a random intercept (the two are the same effect);
    - a correlated block of q terms on q or fewer groups (a q x q covariance
      from that few group effects is singular).
    """
    for b in blocks:
        f = factors[b.group]
        J = f.n_levels
        if (spec.family.has_sigma or spec.family.name in ("bernoulli", "cumulative")) and J == n_obs:
            raise DataError(f"The grouping factor '{b.group}' has one row per group ({J} groups, {n_obs} rows): its random "
                            f"effects cannot be told apart from the {'residual error' if spec.family.has_sigma else 'outcome of a 0/1 row'}"
                            f" (lme4 refuses this too). Group by a coarser factor, or drop {b.expr_text}.")
        if spec.family.has_sigma and n_obs <= b.q * J:
            raise DataError(f"The random term {b.expr_text} has {b.q} x {J} = {b.q * J} random effects for {n_obs} rows: "
                            "with a residual SD too they are not identified (lme4: number of observations <= number of "
                            "random effects). Use fewer random terms or more rows per group.")
        if b.correlated and J <= b.q:
            raise DataError(f"The correlated block {b.expr_text} has {b.q} random terms but '{b.group}' has only {J} groups: "
                            f"a {b.q} x {b.q} covariance needs more groups than terms. Use fewer random terms, uncorrelated "
                            "ones ('||'), or more groups.")
    for g, f in factors.items():
        terms = [(b, k) for b in blocks if b.group == g for k in range(b.q)]
        if not any(b.terms[k] == "(Intercept)" for b, k in terms):
            continue
        for b, k in terms:
            if b.terms[k] == "(Intercept)":
                continue
            by_group = pd.Series(b.Z[:, k]).groupby(f.index)
            if (by_group.max() == by_group.min()).all():
                raise DataError(f"The random slope of '{b.terms[k]}' by '{g}' is not identified: '{b.terms[k]}' is constant "
                                f"within each group of '{g}' (a group-level predictor), so its group-specific slope is the "
                                f"random intercept again. Keep '{b.terms[k]}' as a fixed effect only, e.g. '... + "
                                f"{b.terms[k]} + (1 | {g})'.")


def _factor(data: pd.DataFrame, group: str) -> GroupingFactor:
    values = group_labels(data, group)
    codes, uniques = pd.factorize(values, sort=True)
    if len(uniques) < 2:
        raise DataError(f"The grouping factor '{group}' has only one level ({uniques[0]!r}) in the data used: "
                        "a random effect needs at least two groups.")
    return GroupingFactor(group, tuple(str(u) for u in uniques), codes.astype(np.int64))


def _level2_columns(data: pd.DataFrame, factor: GroupingFactor) -> frozenset:
    """Columns constant within every group of the factor."""
    grouped = data.groupby(factor.index, sort=False)
    return frozenset(c for c in data.columns if c not in factor.name.split(":") and (grouped[c].nunique(dropna=False) <= 1).all())


def build_design(spec: ModelSpec, data: pd.DataFrame, *, trials: str | None = None, offset: str | None = None,
                 weights: str | None = None) -> Design:
    """Check the data against the spec and build the design matrices.

    Parameters
    ----------
    spec : ModelSpec
    data : DataFrame
    trials, offset : str, optional
        Columns with binomial trials, and an offset on the link scale.
    weights : str, optional
        A column of weights, 0 or more (see ``Design.weights``). Rows that
        miss a weight are dropped like rows that miss any other model column;
        negative or infinite weights, or weights that sum to 0, are a
        DataError naming the column; a sum far from the number of rows warns
        (:func:`bayesmlm.design.data_checks.check_weight_sum`).

    Returns
    -------
    Design

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec.formula import parse_formula
    >>> d = build_design(parse_formula("Reaction ~ Days + (Days | Subject)"),
    ...                  bayesmlm.datasets.load("sleepstudy"))
    >>> d.fixed_terms, d.blocks[0].terms, d.factors["Subject"].n_levels
    (('(Intercept)', 'Days'), ('(Intercept)', 'Days'), 18)
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("The data has no rows.")
    extra = {"trials": trials, "offset": offset, "weights": weights}
    cols = model_columns(spec)
    check_columns(data, cols, extra)
    cols += [c for c in extra.values() if c is not None and c not in cols]
    clean, dropped = drop_missing(data, cols)
    check_column_types(clean, predictor_columns(spec), [c for g in spec.groups for c in g.split(":")])
    if weights is not None:
        check_weight_sum(float(check_weights(clean[weights]).sum()), len(clean), weights)
    check_finite(clean)
    return assemble_design(spec, clean, trials=trials, offset=offset, weights=weights, rows_dropped=dropped)


def assemble_design(spec: ModelSpec, clean: pd.DataFrame, *, trials: str | None = None, offset: str | None = None,
                    weights: str | None = None, rows_dropped: int = 0) -> Design:
    """The design matrices of rows that already passed :func:`build_design`'s data checks.

    For rows that were checked before (a saved fit's rows, read back by
    :func:`bayesmlm.load`): the columns, missing and infinite values are not
    checked again. Use :func:`build_design` for anything else.

    Examples
    --------
    >>> import bayesmlm
    >>> from bayesmlm.spec.formula import parse_formula
    >>> spec = parse_formula("Reaction ~ Days + (Days | Subject)")
    >>> d = build_design(spec, bayesmlm.datasets.load("sleepstudy"))
    >>> assemble_design(spec, d.data).fixed_terms == d.fixed_terms
    True
    """
    extra = {"trials": trials, "offset": offset, "weights": weights}
    y, n_trials, success = outcome_arrays(spec, clean, trials)
    check_outcome_varies(y, n_trials, spec.family.name, spec.response)
    fixed_matrix, X, fixed_labels = _fixed_matrix(spec.fixed, clean, "fixed part")
    X, fixed_labels, formula_offset = split_offset(X, fixed_labels)
    categories = None
    if spec.family.name == "cumulative":
        X, fixed_labels = drop_intercept(X, fixed_labels)
        categories = ordinal_outcome(clean[response_columns(spec)[0]])[1]
    fixed_terms = _lme4_terms(fixed_labels, spec.fixed, clean.columns)
    _check_columns_of(X, fixed_terms, "fixed")
    if spec.family.link == "logit" and spec.family.name != "cumulative":
        _warn_separation(X, fixed_terms, y, n_trials, spec.response)
    factors = {g: _factor(clean, g) for g in spec.groups}
    blocks, seen = [], {}
    for b in spec.random:
        z_matrix, Z, labels = _fixed_matrix(b.expr, clean, f"random term {b.text()}")
        names = tuple(lme4_name(c) for c in labels)
        if not names:
            raise SpecError(f"The random term {b.text()} has no columns.")
        _check_columns_of(Z, names, f"random ({b.group})")
        k = seen.get(b.group, 0)
        seen[b.group] = k + 1
        label = b.group if k == 0 else f"{b.group}.{k}"
        blocks.append(BlockDesign(label, b.group, names, b.correlated and len(names) > 1, Z, z_matrix))
    for g in factors:
        terms = [t for b in blocks if b.group == g for t in b.terms]
        dup = {t for t in terms if terms.count(t) > 1}
        if dup:
            raise SpecError(f"The random term(s) {sorted(dup)} appear in more than one block for '{g}'. Give each term once.")
    _check_identified(spec, factors, blocks, len(y))
    off = offset_column(clean, offset)
    if formula_offset is not None:
        off = formula_offset if off is None else off + formula_offset
    return Design(spec=spec, data=clean, y=y, X=X, fixed_terms=fixed_terms, fixed_labels=fixed_labels, blocks=tuple(blocks), factors=factors,
                  level2={g: _level2_columns(clean, f) for g, f in factors.items()}, rows_dropped=rows_dropped,
                  trials=n_trials, offset=off, options=extra, fixed_matrix=fixed_matrix, success=success,
                  weights=None if weights is None else clean[weights].to_numpy(dtype=float), categories=categories)
