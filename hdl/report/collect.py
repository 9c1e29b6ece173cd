"""Find the runs under results/runs and the grid that says which cells were expected.

Run directories carry their coordinates as ``key~value`` path segments (CONTRACTS.md):
``dataset~D/labels~N/imbalance~IF/method~M/seed~S/stage1/metrics.json``,
``.../seed~S/round~R/relabel.json`` and ``.../seed~S/round~R/variant~V/metrics.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from hdl.errors import UserError

SETTING = ["dataset", "labels", "imbalance"]
CELL = SETTING + ["method", "seed"]
RUN = CELL + ["round", "variant"]
STAGE1_DIR = "stage1"
STAGE1_VARIANT = "stage1"
STAGE1_ROUND = 0
COLUMN_TYPES = {"dataset": str, "labels": int, "imbalance": float, "method": str, "seed": int, "round": int}


def collect_runs(runs_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every metrics.json and relabel.json under ``runs_dir`` as two frames.

    Columns: RUN (``variant`` is "stage1" and ``round`` 0 for stage-1 runs; relabel rows
    have no variant), ``path`` and ``record`` (the parsed JSON). A file that is not valid
    JSON belongs to a failed run: it is reported on stderr and left out, so its cell shows
    as missing.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise UserError(f"--runs-dir {root}: no such directory; run the workflow first (snakemake --cores N)")
    metrics = _read_records(root, "metrics.json")
    relabels = _read_records(root, "relabel.json")
    if metrics.empty and relabels.empty:
        raise UserError(
            f"--runs-dir {root}: no metrics.json or relabel.json found; "
            "point it at the pipeline's results/runs after at least one run has finished"
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
        raise UserError(f"--grid {path}: no such file; the workflow writes it (results/grid.csv), or leave --grid out")
    grid = pd.read_csv(path)
    absent = [column for column in CELL if column not in grid.columns]
    if absent:
        raise UserError(f"--grid {path}: missing column(s) {', '.join(absent)}; expected {', '.join(CELL)}")
    if grid.empty:
        raise UserError(f"--grid {path}: no rows; it must list the expected cells, one per seed")
    return _coerce(grid[CELL], f"--grid {path}").drop_duplicates().reset_index(drop=True)


def _read_records(root: Path, filename: str) -> pd.DataFrame:
    rows = []
    for path in sorted(root.rglob(filename)):
        coordinates = _parse_run_path(path.relative_to(root).parent)
        if coordinates is None:
            print(f"hdl aggregate: skipping {path}: its path lacks {'/'.join(CELL)} segments", file=sys.stderr)
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            print(f"hdl aggregate: skipping {path}: unreadable ({error}); its cell shows as missing", file=sys.stderr)
            continue
        rows.append({**coordinates, "path": str(path), "record": record})
    frame = pd.DataFrame(rows, columns=RUN + ["path", "record"])
    return _coerce(frame, str(root)) if rows else frame


def _parse_run_path(relative_dir: Path) -> dict[str, str | int | None] | None:
    fields: dict[str, str | int | None] = {"round": None, "variant": None}
    for part in relative_dir.parts:
        if part == STAGE1_DIR:
            fields.update(round=STAGE1_ROUND, variant=STAGE1_VARIANT)
        elif "~" in part:
            key, value = part.split("~", 1)
            fields[key] = value
    if any(key not in fields for key in CELL) or fields["round"] is None:
        return None
    return {key: fields[key] for key in RUN}


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
