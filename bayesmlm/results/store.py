"""Saving a Fit to one NetCDF file and reading it back, losslessly.

The file is the fit's DataTree plus a ``model_data`` group (the rows that were
fitted) and, in the root's attributes, the formula, family, priors and fit
record as JSON. Loading rebuilds the design from those rows, without checking them again.
This module knows nothing of :class:`bayesmlm.Fit`: it writes and reads parts.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import xarray as xr

from ..design.matrices import assemble_design
from ..design.priors import Prior
from ..errors import FitFileError
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
        "link": fit.design.spec.family.link,
        "priors": {k: [p.dist, p.kwargs] for k, p in fit.prior_dict.items()},
        "options": fit.design.options,
        "record": asdict(fit.record),
    }
    target = Path(path)
    if target.is_dir():
        raise FitFileError(f"Cannot save the fit to '{target}': it is a folder. Give a file name, e.g. '{target / 'fit.nc'}'.")
    if not target.parent.is_dir():
        raise FitFileError(f"Cannot save the fit to '{target}': the folder '{target.parent}' does not exist. Create it first "
                           f"(Path('{target.parent}').mkdir(parents=True)).")
    data, meta["columns"] = _storable(fit.design.data)
    meta["column_order"] = [str(c) for c in fit.design.data.columns]
    tree = fit.idata.copy()
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
    source = Path(path)
    if not source.is_file():
        raise FitFileError(f"No saved fit at '{source}'" + (": it is a folder" if source.is_dir() else "")
                           + ". Give the path of a file written by Fit.save().")
    try:
        tree = xr.open_datatree(source).load()
    except Exception as err:  # netCDF4/HDF5 and xarray raise OSError, ValueError, KeyError... for a damaged file
        raise FitFileError(f"Cannot read '{source}' as a saved fit: it is not a readable NetCDF file (truncated or "
                           f"corrupt?): {type(err).__name__}: {str(err).splitlines()[0][:160]}. Save the fit again with Fit.save().") from None
    if _KEY not in tree.attrs or "model_data" not in tree.children:
        raise FitFileError(f"{source} is not a bayesmlm fit (no '{_KEY}' attribute or 'model_data' group): a NetCDF file "
                           "from another tool (ArviZ's to_netcdf, say) lacks the model and its rows. Save fits with Fit.save().")
    try:
        meta = json.loads(tree.attrs[_KEY])
    except json.JSONDecodeError as err:
        raise FitFileError(f"{source} has a damaged '{_KEY}' attribute ({err}); save the fit again with Fit.save().") from None
    data = _restored(tree["model_data"].to_dataset().to_dataframe().reset_index(drop=True), meta.get("columns", {}))
    data = data[meta.get("column_order", list(data.columns))]
    spec = parse_formula(meta["formula"], meta["family"], meta.get("link"))
    opts = meta.get("options") or {}
    design = assemble_design(spec, data, trials=opts.get("trials"), offset=opts.get("offset"),
                             weights=opts.get("weights"), rows_dropped=meta["record"]["rows_dropped"])
    priors = {k: Prior(d, **kw) for k, (d, kw) in meta["priors"].items()}
    rec = meta["record"]
    record = FitRecord(**{**rec, "settings": SamplerSettings(**rec["settings"]),
                          "diagnostics": Diagnostics(**{**rec["diagnostics"], "flagged": tuple(rec["diagnostics"]["flagged"])})})
    idata = tree.copy()
    del idata["model_data"]
    idata.attrs = {k: v for k, v in tree.attrs.items() if k != _KEY}
    return design, priors, idata, record


def _storable(data: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The rows as NetCDF can hold them, and what it takes to read each column back as it was.

    A Categorical is stored as its codes, with its categories and whether it is
    ordered, so that the reloaded design has the same levels, in the same order,
    with the same reference level; pandas' nullable dtypes (Int64, Float64,
    boolean, string) as their numpy counterparts, with their dtype's name.
    """
    out, columns = data.copy(), {}
    for c in data.columns:
        col = data[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cats = col.cat.categories
            values = cats.tolist() if _json_safe(cats.tolist()) else [str(v) for v in cats]
            columns[c] = {"categories": values, "ordered": bool(col.cat.ordered)}
            out[c] = col.cat.codes.astype("int32")
        elif pd.api.types.is_extension_array_dtype(col.dtype) or col.dtype == object:
            columns[c] = {"dtype": str(col.dtype)}
            if pd.api.types.is_bool_dtype(col.dtype):
                out[c] = col.to_numpy(dtype=bool)
            elif pd.api.types.is_numeric_dtype(col.dtype):
                out[c] = col.to_numpy(dtype=float if pd.api.types.is_float_dtype(col.dtype) else "int64")
            else:
                out[c] = col.astype(str).astype(object)
    return out, columns


def _restored(data: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """Columns read back with the dtypes :func:`_storable` recorded."""
    for c, how in columns.items():
        if "categories" in how:
            data[c] = pd.Categorical.from_codes(data[c].to_numpy(dtype="int64"), categories=how["categories"],
                                                ordered=how["ordered"])
        elif how["dtype"] != "object":
            data[c] = data[c].astype(how["dtype"])
    return data


def _json_safe(values: list) -> bool:
    try:
        json.dumps(values)
        return True
    except TypeError:
        return False
