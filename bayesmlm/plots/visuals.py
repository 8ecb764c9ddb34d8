"""The ``visuals={...}`` convention every figure shares (as arviz-plots does):
each element by name takes a dict of keyword arguments, True, or False to
leave it out.
"""

from __future__ import annotations

__all__ = ["check_visuals", "style"]


def check_visuals(visuals: dict | None, names: tuple[str, ...], plot: str) -> dict:
    """Validate ``visuals``: keys among ``names``; values a dict of kwargs, True or False.

    Examples
    --------
    >>> check_visuals({"legend": False}, ("legend", "band"), "bar")
    {'legend': False}
    """
    visuals = dict(visuals or {})
    unknown = [k for k in visuals if k not in names]
    if unknown:
        raise ValueError(f"Unknown visual(s) {', '.join(map(repr, unknown))} for {plot}(). Its visuals: {', '.join(names)}.")
    for k, v in visuals.items():
        if not isinstance(v, (dict, bool)):
            raise ValueError(f"visuals['{k}'] must be a dict of keyword arguments, True or False; got {type(v).__name__}.")
    return visuals


def style(visuals: dict, name: str, **defaults) -> dict | None:
    """Keyword arguments for one element: defaults updated by the user's; None if switched off.

    Examples
    --------
    >>> style({"band": {"alpha": 0.5}}, "band", alpha=0.2, color="C1")
    {'alpha': 0.5, 'color': 'C1'}
    """
    given = visuals.get(name, True)
    if given is False:
        return None
    return {**defaults, **(given if isinstance(given, dict) else {})}
