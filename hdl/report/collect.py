"""Find the runs under results/runs and the grid that says which cells were expected.

Run directories carry their coordinates as ``key~value`` path segments, as
``hdl.layout`` defines them:
``dataset~D/labels~N/imbalance~IF/method~M/seed~S/stage1/metrics.json``,
``.../seed~S/round~R/relabel.json`` and ``.../seed~S/round~R/variant~V/metrics.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from hdl import layout
from hdl.errors import UserError
from hdl.files import read_csv, read_metrics, read_relabel_report

SETTING = list(layout.SETTING)
CELL = list(layout.CELL)
RUN = list(layout.RUN)
#: a stage-1 run's variant and round in the frames
STAGE1_VARIANT = layout.STAGE1
STAGE1_ROUND = layout.STAGE1_ROUND
#: how each run file is read and checked
READERS = {layout.METRICS: read_metrics, layout.RELABEL_REPORT: read_relabel_report}
COLUMN_TYPES = {"dataset": str, "labels": int, "imbalance": float, "method": str, "seed": int, "round": int}


def collect_runs(runs_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every metrics.json and relabel.json under ``runs_dir`` as two frames.

    Columns: RUN (``variant`` is "stage1" and ``round`` 0 for stage-1 runs; relabel rows
    have no variant), ``path`` and ``record`` (the parsed JSON). Each file is checked by
    ``hdl.files`` (JSON, keys, fractions, the cell it records against its folder's); a bad
    one is a UserError naming it, since hdl writes them atomically and a torn one means
    something else went wrong.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"--runs-dir {root}: no such directory; run the workflow first (snakemake --cores N)")
    metrics = _read_records(root, layout.METRICS)
    relabels = _read_records(root, layout.RELABEL_REPORT)
    if metrics.empty and relabels.empty:
        raise UserError(
            f"--runs-dir {root}: no {layout.METRICS} or {layout.RELABEL_REPORT} found; "
            f"point it at the pipeline's {layout.RUNS} after at least one run has finished"
        )
    return metrics, relabels


def load_grid(grid_path: str | Path | None, *runs: pd.DataFrame) -> pd.DataFrame:
    """The expected cells (CELL columns, one row per seed), in the order the tables follow.

    Without a grid file, the expected cells are the ones any of ``runs`` was found for.
    """
    if grid_path is None:
        return pd.concat([frame[CELL] for frame in runs]).drop_duplicates().reset_index(drop=True)
    path = Path(grid_path)
    if not path.is_file():
        raise UserError(f"--grid {path}: no such file; the workflow writes it ({layout.GRID}), or leave --grid out")
    grid = read_csv(path, "--grid", f"the workflow writes it ({layout.GRID}), or leave --grid out")
    absent = [column for column in CELL if column not in grid.columns]
    if absent:
        raise UserError(f"--grid {path}: missing column(s) {', '.join(absent)}; expected {', '.join(CELL)}")
    if grid.empty:
        raise UserError(f"--grid {path}: no rows; it must list the expected cells, one per seed")
    return _coerce(grid[CELL], f"--grid {path}").drop_duplicates().reset_index(drop=True)


def within_grid(runs: pd.DataFrame, grid: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` whose cell the grid lists: runs of other seeds or settings left
    under the same runs folder (a tuning's, an earlier grid's) must not enter its tables."""
    if runs.empty:
        return runs
    listed = pd.MultiIndex.from_frame(runs[CELL]).isin(pd.MultiIndex.from_frame(grid[CELL]))
    return runs[listed].reset_index(drop=True)


def _read_records(root: Path, filename: str) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob(filename)):
        coordinates = layout.parse_run_dir(path.relative_to(root).parent)
        if coordinates is None:
            print(f"hdl aggregate: skipping {path}: its path lacks {'/'.join(CELL)} segments", file=sys.stderr)
            continue
        record = READERS[filename](path, coordinates)
        rows.append({**coordinates, "path": str(path), "record": record})
    frame = pd.DataFrame(rows, columns=RUN + ["path", "record"])
    return _coerce(frame, str(root)) if rows else frame


def _coerce(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    frame = frame.copy()
    for column, kind in COLUMN_TYPES.items():
        if column not in frame.columns:
            continue
        try:
            # "250", "250.0" and 250 must all name the same cell, in the grid and in paths.
            frame[column] = frame[column].map(lambda value: kind(float(value)) if kind is not str else str(value))
        except ValueError as error:
            raise UserError(f"{source}: column {column!r} holds a value that is not {kind.__name__}: {error}") from None
    return frame
