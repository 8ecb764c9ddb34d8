"""Run configurations: one YAML file per model, read and checked.

A config says which data, which model, which priors, how to sample and which
plots to draw; ``bayesmlm run CONFIG --out DIR`` does the rest. Example::

    data: wvs7_sim                  # a bundled data set, or a CSV path (relative to this file)
    formula: tech ~ 1 + smu + (1 + smu | country)
    family: gaussian
    priors: {sigma: "exponential(0.5)"}
    fit: {draws: 1000, tune: 1000, chains: 4, seed: 2024, method: auto}
    plots: {which: [bar, slopes, forest, correlation, shrinkage], term: smu}

Level equations replace ``formula`` with ``level1``, ``level2``, ``group``
and optionally ``fixed`` (as :meth:`bayesmlm.MLM.from_levels` takes them).
Every mistake raises :class:`ConfigError` naming the key and what it allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from ..errors import ConfigError
from ..plots.save import PLOTS
from ..spec.formula import FAMILIES, LINKS

__all__ = ["RunConfig", "load_config", "parse_config", "load_data", "build_model", "FIT_KEYS", "TOP_KEYS"]

TOP_KEYS = ("name", "title", "description", "data", "formula", "level1", "level2", "group", "fixed", "family", "link",
            "trials", "offset", "weights", "priors", "fit", "plots", "compare_frequentist")
FIT_KEYS = ("draws", "tune", "chains", "seed", "sampler", "target_accept", "method")
_PLOT_KEYS = ("which", "term")
_INT_KEYS = ("draws", "tune", "chains", "seed")


@dataclass(frozen=True)
class RunConfig:
    """One model to run, as read from a YAML file.

    Attributes
    ----------
    name : str
        Short name (default: the file's stem); used in titles.
    title : str
        One line saying what the model is.
    data : str
        A bundled data set's name, or the path of a CSV file.
    formula : str or None
        lme4 syntax; None when the model is given as level equations.
    level1, level2, group, fixed :
        Level equations, as :meth:`bayesmlm.MLM.from_levels` takes them.
    family, trials, offset, weights, link : str
        As :class:`bayesmlm.MLM` takes them (``weights``: a column of weights).
    priors : dict
        Prior overrides by name, e.g. ``{"sigma": "exponential(0.5)"}``.
    fit : dict
        Keyword arguments of :meth:`bayesmlm.MLM.fit` (keys in ``FIT_KEYS``).
    plots : tuple of str
        Which plots of :mod:`bayesmlm.plots` to draw (names in ``PLOTS``).
    plot_term : str or None
        The level-1 term the per-group plots show (default: the first random slope).
    compare_frequentist : bool
        Whether the report holds the REML comparison.
    source : Path or None
        The file the config was read from.
    """

    name: str
    data: str
    title: str = ""
    formula: str | None = None
    level1: str | None = None
    level2: dict | None = None
    group: str | None = None
    fixed: tuple[str, ...] = ()
    family: str = "gaussian"
    trials: str | None = None
    offset: str | None = None
    weights: str | None = None
    link: str | None = None
    priors: dict = field(default_factory=dict)
    fit: dict = field(default_factory=dict)
    plots: tuple[str, ...] = PLOTS
    plot_term: str | None = None
    compare_frequentist: bool = True
    source: Path | None = None

    def with_fit(self, **overrides) -> "RunConfig":
        """This config with some sampler settings replaced (None values are ignored).

        Examples
        --------
        >>> cfg = parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)"})
        >>> cfg.with_fit(draws=100, seed=None).fit["draws"]
        100
        """
        return replace(self, fit={**self.fit, **{k: v for k, v in overrides.items() if v is not None}})

    def to_dict(self) -> dict:
        """The config as plain data, in the YAML layout it was read from.

        Examples
        --------
        >>> parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (1 | Subject)"}).to_dict()["family"]
        'gaussian'
        """
        out = {"name": self.name, "title": self.title, "data": self.data}
        if self.formula is not None:
            out["formula"] = self.formula
        else:
            out.update(level1=self.level1, level2=self.level2, group=self.group, fixed=list(self.fixed))
        out["family"] = self.family
        out.update({k: getattr(self, k) for k in ("link", "trials", "offset", "weights") if getattr(self, k) is not None})
        out.update(priors=dict(self.priors), fit=dict(self.fit),
                   plots={"which": list(self.plots), **({"term": self.plot_term} if self.plot_term else {})},
                   compare_frequentist=self.compare_frequentist)
        return out


def _where(source) -> str:
    return f" in {source}" if source else ""


def _unknown(kind: str, key, allowed, source) -> ConfigError:
    return ConfigError(f"Unknown {kind} '{key}'{_where(source)}. Allowed: {', '.join(map(str, allowed))}.")


def _check_str(raw: dict, key: str, source) -> None:
    if raw.get(key) is not None and not isinstance(raw[key], str):
        raise ConfigError(f"Key '{key}'{_where(source)} must be a string; got {raw[key]!r}.")


def _parse_fit(raw, source) -> dict:
    from ..sample.nuts import FIT_METHODS, SAMPLERS

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"Key 'fit'{_where(source)} must be a mapping with keys among {', '.join(FIT_KEYS)}; got {raw!r}.")
    for k, v in raw.items():
        if k not in FIT_KEYS:
            raise ConfigError(f"Unknown key 'fit.{k}'{_where(source)}. Allowed keys under 'fit': {', '.join(FIT_KEYS)}.")
        if k in _INT_KEYS and (isinstance(v, bool) or not isinstance(v, int) or v < (0 if k in ("tune", "seed") else 1)):
            raise ConfigError(f"Key 'fit.{k}'{_where(source)} must be a {'non-negative' if k in ('tune', 'seed') else 'positive'} "
                              f"integer; got {v!r}.")
    if raw.get("sampler", "nutpie") not in SAMPLERS:
        raise ConfigError(f"Key 'fit.sampler'{_where(source)} is '{raw['sampler']}'. Allowed values: {', '.join(SAMPLERS)}.")
    if raw.get("method", "auto") not in FIT_METHODS:
        raise ConfigError(f"Key 'fit.method'{_where(source)} is '{raw['method']}'. Allowed values: {', '.join(FIT_METHODS)}.")
    ta = raw.get("target_accept", 0.9)
    if isinstance(ta, bool) or not isinstance(ta, (int, float)) or not 0 < ta < 1:
        raise ConfigError(f"Key 'fit.target_accept'{_where(source)} must be a number between 0 and 1; got {ta!r}.")
    return dict(raw)


def _parse_plots(raw, source) -> tuple[tuple[str, ...], str | None]:
    if raw is None:
        return PLOTS, None
    if not isinstance(raw, dict):
        raise ConfigError(f"Key 'plots'{_where(source)} must be a mapping with keys {', '.join(_PLOT_KEYS)}, "
                          f"e.g. {{which: [bar, forest], term: smu}}; got {raw!r}.")
    for k in raw:
        if k not in _PLOT_KEYS:
            raise ConfigError(f"Unknown key 'plots.{k}'{_where(source)}. Allowed keys under 'plots': {', '.join(_PLOT_KEYS)}.")
    which = raw.get("which", list(PLOTS))
    if isinstance(which, str) or not isinstance(which, list):
        raise ConfigError(f"Key 'plots.which'{_where(source)} must be a list; allowed values: {', '.join(PLOTS)}.")
    for p in which:
        if p not in PLOTS:
            raise ConfigError(f"Key 'plots.which'{_where(source)} has '{p}'. Allowed values: {', '.join(PLOTS)}.")
    term = raw.get("term")
    if term is not None and not isinstance(term, str):
        raise ConfigError(f"Key 'plots.term'{_where(source)} must be a term name (a string); got {term!r}.")
    return tuple(which), term


def parse_config(raw: dict, source: Path | None = None) -> RunConfig:
    """Check a config given as a dict (as read from YAML) and return it as a :class:`RunConfig`.

    Parameters
    ----------
    raw : dict
        Keys among ``TOP_KEYS``; see the module's documentation.
    source : Path, optional
        The file it came from: names the default ``name``, anchors relative
        CSV paths, and appears in error messages.

    Raises
    ------
    ConfigError
        Naming the key that is wrong and the allowed keys or values.

    Examples
    --------
    >>> cfg = parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)",
    ...                     "fit": {"draws": 500, "seed": 1}})
    >>> cfg.fit
    {'draws': 500, 'seed': 1}
    >>> parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)", "famly": "gaussian"})
    Traceback (most recent call last):
    ...
    bayesmlm.errors.ConfigError: Unknown key 'famly'. Allowed: name, title, description, data, formula, ...
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"A config must be a mapping of keys ({', '.join(TOP_KEYS)}){_where(source)}; got {type(raw).__name__}.")
    for k in raw:
        if k not in TOP_KEYS:
            raise _unknown("key", k, TOP_KEYS, source)
    if "data" not in raw:
        raise ConfigError(f"Missing key 'data'{_where(source)}: a bundled data set ({', '.join(_bundled())}) or a CSV path.")
    for k in ("name", "title", "description", "data", "formula", "level1", "group", "family", "link", "trials", "offset",
              "weights"):
        _check_str(raw, k, source)
    has_formula, has_levels = raw.get("formula") is not None, raw.get("level1") is not None
    if has_formula == has_levels:
        raise ConfigError(f"Give the model{_where(source)} either as 'formula' (lme4 syntax) or as 'level1', 'level2' and "
                          f"'group' (level equations), {'not both' if has_formula else 'but none was given'}.")
    if has_levels and raw.get("group") is None:
        raise ConfigError(f"Key 'group'{_where(source)} is missing: level equations need the grouping column.")
    if has_formula:
        for k in ("level2", "group", "fixed"):
            if raw.get(k) is not None:
                raise ConfigError(f"Key '{k}'{_where(source)} belongs to level equations; with 'formula', leave it out.")
    if raw.get("level2") is not None and not isinstance(raw["level2"], dict):
        raise ConfigError(f"Key 'level2'{_where(source)} must map level-1 terms to equations, e.g. "
                          "{\"1\": \"~ 1 + w\", x: \"~ 1 + w\"}.")
    family = raw.get("family", "gaussian")
    if family not in FAMILIES:
        raise ConfigError(f"Key 'family'{_where(source)} is '{family}'. Allowed values: {', '.join(FAMILIES)}.")
    link = raw.get("link")
    if link is not None and link not in LINKS[family]:
        raise ConfigError(f"Key 'link'{_where(source)} is '{link}'. Allowed values for family '{family}': "
                          f"{', '.join(LINKS[family])}.")
    priors = raw.get("priors") or {}
    if not isinstance(priors, dict) or not all(isinstance(v, str) for v in priors.values()):
        raise ConfigError(f"Key 'priors'{_where(source)} must map prior names to text like \"normal(0, 1)\"; got {priors!r}.")
    fixed = raw.get("fixed") or []
    if isinstance(fixed, str) or not isinstance(fixed, list):
        raise ConfigError(f"Key 'fixed'{_where(source)} must be a list of level-1 terms; got {fixed!r}.")
    compare = raw.get("compare_frequentist", True)
    if not isinstance(compare, bool):
        raise ConfigError(f"Key 'compare_frequentist'{_where(source)} must be true or false; got {compare!r}.")
    plots, term = _parse_plots(raw.get("plots"), source)
    name = raw.get("name") or (Path(source).stem if source else "model")
    data = str(raw["data"])
    if source is not None and data not in _bundled() and not Path(data).is_absolute():
        data = str((Path(source).parent / data).resolve())
    return RunConfig(name=name, data=data, title=raw.get("title") or raw.get("description") or "",
                     formula=raw.get("formula"), level1=raw.get("level1"),
                     level2={str(k): v for k, v in raw["level2"].items()} if raw.get("level2") else None,
                     group=raw.get("group"), fixed=tuple(fixed), family=family, trials=raw.get("trials"),
                     offset=raw.get("offset"), weights=raw.get("weights"), link=link, priors=dict(priors),
                     fit=_parse_fit(raw.get("fit"), source),
                     plots=plots, plot_term=term, compare_frequentist=compare, source=Path(source) if source else None)


def load_config(path) -> RunConfig:
    """Read and check one YAML config file.

    Examples
    --------
    >>> cfg = load_config("configs/sleepstudy.yaml")  # doctest: +SKIP
    >>> cfg.formula  # doctest: +SKIP
    'Reaction ~ 1 + Days + (1 + Days | Subject)'
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No config file at {path}.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8): a config is YAML text, e.g. configs/sleepstudy.yaml.") from None
    return parse_config(raw, source=path)


def _bundled() -> list[str]:
    from ..datasets import describe

    return list(describe()["name"])


def load_data(cfg: RunConfig, subsample: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The config's data: a bundled data set or a CSV file, optionally a random subsample of rows.

    Parameters
    ----------
    cfg : RunConfig
    subsample : int, optional
        Keep this many rows, drawn without replacement (for quick runs and
        tests); ignored when the data have no more rows than that.
    seed : int
        Seed of the subsample.

    Examples
    --------
    >>> cfg = parse_config({"data": "wvs7_sim", "formula": "tech ~ 1 + (1 | country)"})
    >>> load_data(cfg, subsample=2000).shape
    (2000, 4)
    """
    from ..datasets import load

    if cfg.data in _bundled():
        df = load(cfg.data)
    else:
        path = Path(cfg.data)
        if not path.is_file():
            raise ConfigError(f"Key 'data'{_where(cfg.source)} is '{cfg.data}': neither a bundled data set "
                              f"({', '.join(_bundled())}) nor an existing CSV file.")
        df = pd.read_csv(path)
    if subsample is not None and subsample < len(df):
        df = df.sample(n=subsample, random_state=seed).sort_index().reset_index(drop=True)
    return df


def build_model(cfg: RunConfig, data: pd.DataFrame | None = None):
    """The :class:`bayesmlm.MLM` a config describes (errors name the config key at fault).

    Examples
    --------
    >>> cfg = parse_config({"data": "sleepstudy", "formula": "Reaction ~ Days + (Days | Subject)"})
    >>> build_model(cfg).formula
    'Reaction ~ 1 + Days + (1 + Days | Subject)'
    """
    from ..errors import DataError, SpecError
    from ..model import MLM

    data = load_data(cfg) if data is None else data
    opts = dict(family=cfg.family, priors=cfg.priors or None, trials=cfg.trials, offset=cfg.offset,
                weights=cfg.weights, link=cfg.link)
    try:
        if cfg.formula is not None:
            return MLM(cfg.formula, data, **opts)
        return MLM.from_levels(cfg.level1, cfg.level2, group=cfg.group, data=data, fixed=cfg.fixed, **opts)
    except (SpecError, DataError) as err:
        key = "priors" if "prior" in str(err).lower() else ("formula" if cfg.formula is not None else "level1/level2/group")
        if cfg.weights is not None and f"'{cfg.weights}'" in str(err):
            key = "weights"
        raise ConfigError(f"Key '{key}'{_where(cfg.source)}: {err}") from err
