"""Readers of the JSON reports (a run's metrics.json, `hdl relabel`'s relabel.json) and of CSV tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from hdl.files.checks import check_cell, expected_cell, fraction, preview, record_cell
from hdl.files.opening import Source, open_json, require_file, short_reason

if TYPE_CHECKING:
    import pandas as pd


#: accuracies metrics.json holds, as fractions; top1 is always there
METRICS_ACCURACIES = ("top1", "balanced_acc", "best_top1", "median_last20_top1")
METRICS_REMEDY = "delete it and rerun its `hdl train` command, which rewrites metrics.json from the run's checkpoint.pt"
RELABEL_REPORT_REMEDY = "delete it and rerun its `hdl relabel` job"


def read_metrics(
    path: str | Path, expected: Mapping[str, Any] | None = None, expected_by: str = "its folder", remedy: str = METRICS_REMEDY
) -> dict[str, Any]:
    """A run's metrics.json; refused if it records another cell or method than ``expected`` (its folder's coordinates, its run's config)."""
    source = Source.of(path, None, remedy)
    record = open_json(source)
    if "top1" not in record:
        raise source.error(f"no top1 key (it has {preview(record)}), so no run wrote it")
    for key in METRICS_ACCURACIES:
        if key in record:
            fraction(source, key, record[key])
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(row, dict) and isinstance(row.get("step"), int) for row in history):
        raise source.error("history is not a list of evaluations with an integer step each")
    for number, row in enumerate(history):
        if "top1" in row:
            fraction(source, f"history[{number}].top1", row["top1"])
    probes = record.get("probes", [])
    if not isinstance(probes, list) or not all(isinstance(row, dict) and isinstance(row.get("global_step"), int) for row in probes):
        raise source.error("probes is not a list of label probes with an integer global_step each")
    refreshes = record.get("refreshes", [])
    if not isinstance(refreshes, list) or not all(
        isinstance(row, dict) and isinstance(row.get("global_step"), int) and isinstance(row.get("per_class"), list)
        for row in refreshes
    ):
        raise source.error("refreshes is not a list of label refreshes with an integer global_step and per_class counts each")
    for number, row in enumerate(refreshes):
        fraction(source, f"refreshes[{number}].coverage", row.get("coverage"))
        fraction(source, f"refreshes[{number}].accuracy", row.get("accuracy"), optional=True)
    check_cell(source, record_cell(source, record), expected_cell(expected), expected_by)
    return record


def read_relabel_report(path: str | Path, expected: Mapping[str, Any] | None = None, remedy: str = RELABEL_REPORT_REMEDY) -> dict[str, Any]:
    """`hdl relabel --report`'s relabel.json; refused if it records another cell than ``expected`` (its folder's coordinates)."""
    source = Source.of(path, None, remedy)
    record = open_json(source)
    missing = [key for key in ("k", "coverage") if key not in record]
    if missing:
        raise source.error(f"no {', '.join(missing)} key (it has {preview(record)}), so `hdl relabel` did not write it")
    if isinstance(record["k"], bool) or not isinstance(record["k"], int) or record["k"] < 1:
        raise source.error(f"k={record['k']!r} is not a positive integer")
    fraction(source, "coverage", record["coverage"])
    fraction(source, "accuracy", record.get("accuracy"), optional=True)
    comparison = record.get("comparison", {})
    selection = record.get("selection") or {}
    if not isinstance(comparison, dict) or not all(isinstance(result, dict) for result in comparison.values()) or not isinstance(selection, dict):
        raise source.error("comparison or selection is not an object of labeler results")
    for labeler, result in comparison.items():
        for key in ("accuracy", "coverage"):
            fraction(source, f"comparison.{labeler}.{key}", result.get(key), optional=True)
    for key in ("coverage", "accuracy", "estimated_accuracy", "argmax_accuracy"):
        fraction(source, f"selection.{key}", selection.get(key), optional=True)
    cell = record.get("cell")
    if cell is not None and not isinstance(cell, dict):
        raise source.error(f"cell={cell!r} is not an object")
    check_cell(source, None if cell is None else record_cell(source, cell), expected_cell(expected), "its folder")
    return record


def read_csv(path: str | Path, flag: str | None, remedy: str) -> pd.DataFrame:
    """A CSV table (the workflow's grid); its columns are the caller's to check."""
    import pandas as pd

    source = Source.of(path, flag, remedy)
    require_file(source)
    try:
        return pd.read_csv(source.path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise source.error(f"not a readable CSV table ({short_reason(error)})") from None
