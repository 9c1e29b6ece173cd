"""USB's published results (``published.csv``, package data), shown next to our stage-1 results.

The file's header names its source (repository, commit, files, columns); this module turns
its cells into accuracies in percent: 100 - error for results/classic_cv.csv, the value as
it stands for results/classic_cv_imb.csv, which holds accuracies.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from hdl.report.collect import SETTING

PUBLISHED_FILE = "published.csv"
PUBLISHED_COLUMNS = ["published_mean", "published_std", "published_source"]
QUANTITIES = ("error", "accuracy")


def load_published() -> pd.DataFrame:
    """SETTING + method + published_mean, published_std (test accuracy, %) + published_source."""
    with resources.files("hdl.report").joinpath(PUBLISHED_FILE).open() as handle:
        table = pd.read_csv(handle, comment="#")
    unknown = sorted(set(table["quantity"]) - set(QUANTITIES))
    if unknown:
        raise ValueError(f"{PUBLISHED_FILE}: quantity {unknown} is none of {QUANTITIES}")
    is_error = (table["quantity"] == "error").to_numpy()
    return pd.DataFrame({
        "dataset": table["dataset"].astype(str),
        "labels": table["labels"].astype(int),
        "imbalance": table["imbalance"].astype(float),
        "method": table["method"].astype(str),
        "published_mean": np.where(is_error, 100.0 - table["mean"], table["mean"]),
        "published_std": table["std"].astype(float),
        "published_source": [
            f"{row.source_file} [{row.source_row}; {row.source_column}]: {row.quantity} {row.mean}±{row.std}"
            for row in table.itertuples(index=False)
        ],
    })


def attach_published(stats: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """``stats`` (accuracy statistics) with PUBLISHED_COLUMNS filled on the stage-1 rows of the
    cells ``published`` has, empty elsewhere: the reproduction gap is stage 1's mean minus published_mean."""
    merged = stats.merge(published, on=SETTING + ["method"], how="left")
    merged.loc[merged["row"] != "stage1", PUBLISHED_COLUMNS] = np.nan
    return merged
