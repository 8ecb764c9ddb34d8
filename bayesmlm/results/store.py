"""Saving a Fit to one NetCDF file and reading it back, losslessly.

The file is the fit's DataTree plus a ``model_data`` group (the rows that were
fitted) and, in the root's attributes, the formula, family, priors and fit
record as JSON. Loading rebuilds the design from those rows, without checking them again.
This module knows nothing of :class:`bayesmlm.Fit`: it writes and reads parts.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd
import xarray as xr

from ..design.matrices import assemble_design
from ..design.priors import Prior
from ..sample.nuts import Diagnostics, SamplerSettings
from ..spec.formula import parse_formula
from .record import FitRecord

__all__ = ["save_fit", "read_fit"]

_KEY = "bayesmlm"


def save_fit(fit, path) -> None:
    """Write a fit to ``path`` (NetCDF). See :func:`load`.

    Examples
    --------
    >>> save_fit(fit, "fit.nc")  # doctest: +SKIP
    """
    fit.design.require_rows("Saving a fit", "load() rebuilds a fit from its rows; save the draws alone with "
                            "fit.idata.to_netcdf(path).")
    meta = {
        "formula": fit.design.spec.formula,
        "family": fit.design.spec.family.name,
        "priors": {k: [p.dist, p.kwargs] for k, p in fit.prior_dict.items()},
        "options": fit.design.options,
        "record": asdict(fit.record),
    }
    tree = fit.idata.copy()
    data = fit.design.data.copy()
    for c in data.columns:
        if isinstance(data[c].dtype, pd.CategoricalDtype) or data[c].dtype == object or pd.api.types.is_string_dtype(data[c]):
            data[c] = data[c].astype(str).astype(object)
    tree["model_data"] = xr.DataTree(xr.Dataset.from_dataframe(data.rename_axis("row")))
    tree.attrs = {**tree.attrs, _KEY: json.dumps(meta)}
    tree.to_netcdf(path)


def read_fit(path) -> tuple:
    """The parts of a fit written by :func:`save_fit`: (design, priors, idata, record).

    The design is rebuilt from the stored rows without checking them again
    (they were checked when the fit was made). :func:`bayesmlm.load` makes
    the Fit.

    Examples
    --------
    >>> design, priors, idata, record = read_fit("fit.nc")  # doctest: +SKIP
    """
    tree = xr.open_datatree(path).load()
    if _KEY not in tree.attrs:
        raise ValueError(f"{path} is not a bayesmlm fit (no '{_KEY}' attribute); save fits with Fit.save().")
    meta = json.loads(tree.attrs[_KEY])
    data = tree["model_data"].to_dataset().to_dataframe().reset_index(drop=True)
    spec = parse_formula(meta["formula"], meta["family"])
    opts = meta.get("options") or {}
    design = assemble_design(spec, data, trials=opts.get("trials"), offset=opts.get("offset"),
                             rows_dropped=meta["record"]["rows_dropped"])
    priors = {k: Prior(d, **kw) for k, (d, kw) in meta["priors"].items()}
    rec = meta["record"]
    record = FitRecord(**{**rec, "settings": SamplerSettings(**rec["settings"]),
                          "diagnostics": Diagnostics(**{**rec["diagnostics"], "flagged": tuple(rec["diagnostics"]["flagged"])})})
    idata = tree.copy()
    del idata["model_data"]
    idata.attrs = {k: v for k, v in tree.attrs.items() if k != _KEY}
    return design, priors, idata, record
