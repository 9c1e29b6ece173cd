"""The label probe's table: HDL on the embeddings against the argmax at four moments of training
(results/tables/probe.*).

The probe plot shows the whole course; this table gives the numbers a claim needs: per setting and
method, the pseudo-label accuracy of HDL's labels and of the EMA model's argmax on the run's
unlabeled training samples, and their paired difference per seed with its interval, at the first
and the last probe of stage 1 and the last probe of each stage-2 variant (the last round's).
"""

from __future__ import annotations

import pandas as pd

from hdl.report.collect import CELL, SETTING, STAGE1_VARIANT
from hdl.report.display import method_name, setting_name
from hdl.report.probe_plot import LABELERS, PANELS
from hdl.report.render import DisplayTable
from hdl.report.stats import CONFIDENCE, paired_t_interval, stage1_and_last_round
from hdl.report.tables import cell_text, difference_text

#: (variant, which probe of the run) -> row label, in table order
MOMENTS = {
    (STAGE1_VARIANT, "first"): "stage 1, first probe",
    (STAGE1_VARIANT, "last"): "stage 1, last probe",
    ("baseline", "last"): "stage 2 baseline, last probe",
    ("hdl", "last"): "stage 2 with HDL labels, last probe",
}
#: (probe coverage, probe key) -> column group: the probe plot's panels
QUANTITIES = {(coverage, key): title for coverage, key, title in PANELS.values()}
KEYS = SETTING + ["method", "moment", "quantity"]


def probe_seed_values(metrics: pd.DataFrame) -> pd.DataFrame:
    """CELL + moment + quantity + step + hdl + argmax (accuracy in %), one row per run, moment and quantity
    the probe recorded (a balanced setting has no tail)."""
    rows = []
    for run in stage1_and_last_round(metrics).itertuples(index=False):
        probes = run.record.get("probes") or []
        for (variant, which), moment in MOMENTS.items():
            if variant != run.variant or not probes:
                continue
            probe = probes[0] if which == "first" else probes[-1]
            for (coverage, key), quantity in QUANTITIES.items():
                values = {labeler: probe[labeler][coverage].get(key) for labeler in LABELERS}
                if any(value is None for value in values.values()):
                    continue
                rows.append({column: getattr(run, column) for column in CELL}
                            | {"moment": moment, "quantity": quantity, "step": probe["global_step"]}
                            | {labeler: 100.0 * value for labeler, value in values.items()})
    return pd.DataFrame(rows, columns=CELL + ["moment", "quantity", "step", *LABELERS])


def probe_statistics(values: pd.DataFrame) -> pd.DataFrame:
    """One row per KEYS: the mean step, HDL's and the argmax's mean accuracy, and HDL − argmax per seed:
    ``delta`` (mean), ``ci_low``, ``ci_high``, ``p_value`` (paired t), ``n_seeds``."""
    rows = []
    for key, group in values.groupby(KEYS, sort=False):
        delta = group["hdl"] - group["argmax"]
        low, high, p_value = paired_t_interval(delta.to_numpy())
        rows.append(dict(zip(KEYS, key)) | {
            "step": group["step"].mean(), "n_seeds": group["seed"].nunique(),
            "hdl": group["hdl"].mean(), "hdl_std": group["hdl"].std(ddof=1),
            "argmax": group["argmax"].mean(), "argmax_std": group["argmax"].std(ddof=1),
            "delta": delta.mean(), "ci_low": low, "ci_high": high, "p_value": p_value,
        })
    table = pd.DataFrame(rows, columns=KEYS + ["step", "n_seeds", "hdl", "hdl_std", "argmax", "argmax_std",
                                               "delta", "ci_low", "ci_high", "p_value"])
    order = {moment: position for position, moment in enumerate(MOMENTS.values())}
    table["order"] = table["moment"].map(order)
    return table.sort_values(SETTING + ["method", "order"], kind="stable").drop(columns="order").reset_index(drop=True)


def probe_display(stats: pd.DataFrame) -> DisplayTable:
    quantities = [quantity for quantity in QUANTITIES.values() if quantity in set(stats["quantity"])]
    columns = [(quantity, part) for quantity in quantities for part in ("HDL", "argmax", "HDL − argmax")]
    caption = (
        "Pseudo-label accuracy (%) on the unlabeled training samples from the label probe (metrics.json's probes): "
        "HDL on the EMA model's embeddings against its argmax, at full coverage, on each one's most confident 30%, "
        "and at full coverage in the tail classes (the third with the fewest given labels; long-tailed settings only). "
        f"HDL and argmax: mean ± sample std over seeds; HDL − argmax: per seed, mean and {CONFIDENCE:.0%} paired-t "
        "interval (n.s.: it contains 0). step: the probe's global step (stage 2 continues stage 1's clock), mean over seeds"
    )
    if stats.empty:
        caption += "; no metrics.json records probes"
    table = DisplayTable(caption + ".", ["setting", "method", "moment", "step", "n"], columns)
    previous = None
    for key, group in stats.groupby(SETTING + ["method", "moment"], sort=False):
        if key[:-1] != previous:
            table.group_starts.add(len(table.rows))
            previous = key[:-1]
        by_quantity = group.set_index("quantity")
        first = group.iloc[0]
        index = [setting_name(*key[: len(SETTING)]), method_name(key[len(SETTING)]), key[-1],
                 f"{first['step']:.0f}", str(int(group["n_seeds"].max()))]
        cells: list[str | None] = []
        for quantity in quantities:
            if quantity not in by_quantity.index:
                cells += [None, None, None]
                continue
            row = by_quantity.loc[quantity]
            n = int(row["n_seeds"])
            cells += [cell_text(row["hdl"], row["hdl_std"], n, n), cell_text(row["argmax"], row["argmax_std"], n, n),
                      difference_text(row["delta"], row["ci_low"], row["ci_high"], n, n)]
        table.rows.append((index, cells))
    return table
