"""The lessons in notebooks/ execute end to end, with few draws; each asserts its key numbers itself.

The notebooks read BAYESMLM_DRAWS and BAYESMLM_CHAINS (draws = tuning steps
per chain) and, for wvs7_sim, BAYESMLM_WVS_ROWS (a random subsample of rows;
unset, the full 91,175; lesson 7 reads BAYESMLM_ORDINAL_COUNTRIES, a random subsample of
countries, set to 16 here). A notebook fails here if any cell raises, and its
cells hold ``assert`` lines for the numbers the lesson teaches (m2's smu
effect negative, the ICC of the empty model near 0.09, and so on).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ENV = {"BAYESMLM_DRAWS": "200", "BAYESMLM_CHAINS": "2", "MPLBACKEND": "Agg", "BAYESMLM_ORDINAL_COUNTRIES": "16"}
WVS_ROWS = os.environ.get("BAYESMLM_TEST_WVS_ROWS", "")  # all 91,175 rows: the fast path makes that cheap
MAX_LINES = 30


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_seven_lessons():
    assert [p.name[:2] for p in _notebooks()] == ["01", "02", "03", "04", "05", "06", "07"]


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_cells_fit_on_a_screen(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        assert len(cell.source.splitlines()) <= MAX_LINES, f"cell {i} of {path.name} is longer than a screen"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_executes(path, monkeypatch, tmp_path):
    for k, v in {**ENV, "BAYESMLM_WVS_ROWS": WVS_ROWS}.items():
        monkeypatch.setenv(k, v)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "every cell runs, once, in order"
    figures = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} drew no figure"
    nbformat.write(nb, tmp_path / path.name)  # the executed copy, for a look when something seems off
