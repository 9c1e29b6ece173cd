"""What the Snakemake workflow needs from Python: config checking, the grid, and config -> `hdl` flags.

The rules in ``workflow/rules/*.smk`` stay thin: each calls one ``hdl``
subcommand with paths (``hdl.layout``), wildcards and the flag strings built
here, so that everything worth testing is reachable without Snakemake.

A cell's trainer settings come from six config blocks (``train_layers``), each
replacing the keys it gives of the ones before; its split options from
``split`` and its grid setting's ``split``.  config/README.md explains both.
"""

from __future__ import annotations

import shlex
import signal
from pathlib import Path
from typing import Any, Iterable, Mapping

from hdl import layout
from hdl.errors import UserError
from hdl.training.stop_signal import STOP_SIGNAL

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
#: the setting that becomes `hdl train --steps` in each stage; `arch` becomes --arch, every other key --set
STEPS_KEYS = {1: "stage1_steps", 2: "stage2_steps"}


class ConfigError(UserError):
    """A config value that does not match the schema; the message names the key."""


def load_yaml(path: str | Path) -> Any:
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


# ---------------------------------------------------------------- validation


def check_config(config: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every key of ``config`` that breaks ``schema``, by its dotted path.

    Snakemake's own ``validate`` reports only the first error and not where it
    is; this runs first so that a typo deep in the config reads as
    ``grid.settings[1].labelz: unknown key``.
    """
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(schema)
    problems = sorted(_describe(error) for error in validator.iter_errors(config))
    if problems:
        raise ConfigError("invalid config (see workflow/schemas/config.schema.yaml and config/README.md):\n  "
                          + "\n  ".join(problems))


def _describe(error) -> str:
    where = _dotted(error.absolute_path)
    prefix = f"{where}." if where else ""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(key for key in error.instance if key not in allowed)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return "; ".join(f"{prefix}{key}: unknown key{hint}" for key in unknown)
    if "propertyNames" in error.schema_path:
        # datasets.cifar1000 and the like: the key itself is wrong, not its value
        return f"{prefix}{error.instance}: unknown key ({error.message.split(' is ', 1)[1]})"
    if error.validator == "anyOf":
        # k: auto|int and the like: the branches' messages would only confuse
        return f"{where}: {error.instance!r} is not valid: {error.schema.get('description', 'see the schema')}"
    return f"{where or '(top level)'}: {error.message}"


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# ---------------------------------------------------------------- grid


def format_value(value: Any) -> str:
    """How a grid value appears in paths: 1.0 -> '1', 0.5 -> '0.5', 250 -> '250'."""
    return format(value, "g") if isinstance(value, float) else str(value)


def _setting_key(dataset: Any, labels: Any, imbalance: Any) -> tuple[str, str, str]:
    return str(dataset), format_value(labels), format_value(float(imbalance))


def _setting_cells(setting: Mapping[str, Any]) -> Iterable[tuple[str, str, str]]:
    for labels in setting["labels"]:
        for imbalance in setting.get("imbalance", [1]):
            yield _setting_key(setting["dataset"], labels, imbalance)


def grid_table(config: Mapping[str, Any]):
    """One row per cell (``layout.CELL`` columns), values formatted as they appear in paths."""
    import pandas as pd

    grid = config["grid"]
    rows = [
        (*setting_key, method, format_value(seed))
        for setting in grid["settings"]
        for setting_key in _setting_cells(setting)
        for method in grid["methods"]
        for seed in grid["seeds"]
    ]
    table = pd.DataFrame(rows, columns=list(layout.CELL), dtype=str)
    duplicated = table[table.duplicated()]
    if len(duplicated):
        first = dict(duplicated.iloc[0])
        raise ConfigError(f"grid: the cell {first} appears twice; remove the repeated label budget or imbalance factor")
    return table


def write_grid(cells, path: str | Path, log_path: str | Path) -> None:
    """results/grid.csv: the cells the tables must show, finished or not."""
    from hdl.io import atomic_path

    with atomic_path(path) as tmp:
        cells.to_csv(tmp, index=False)
    Path(log_path).write_text(f"wrote {len(cells)} cells to {path}\n")


def grid_setting(config: Mapping[str, Any], cell: Mapping[str, Any]) -> tuple[int, Mapping[str, Any]]:
    """Index and entry of ``grid.settings`` that holds the cell's dataset, labels and imbalance."""
    wanted = _setting_key(cell["dataset"], cell["labels"], cell["imbalance"])
    for index, setting in enumerate(config["grid"]["settings"]):
        if wanted in set(_setting_cells(setting)):
            return index, setting
    raise ConfigError(f"grid.settings: no setting holds dataset {wanted[0]}, labels {wanted[1]}, imbalance {wanted[2]}")


# ---------------------------------------------------------------- flags


def _join(flags: Iterable[str]) -> str:
    return " ".join(shlex.quote(flag) for flag in flags)


def _set_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else format_value(value)


def train_layers(config: Mapping[str, Any], cell: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The config blocks that set a cell's trainer settings, by name, most general first.

    A grid setting comes after the data set and method blocks: it is where a
    protocol departs from a data set's usual values (CIFAR-10-LT's schedule).
    Split options have no method block: a split is shared by all methods.
    """
    dataset, method = cell["dataset"], cell["method"]
    index, setting = grid_setting(config, cell)
    method_block = config.get("methods", {}).get(method) or {}
    return [
        ("train", config.get("train", {})),
        (f"datasets.{dataset}", config.get("datasets", {}).get(dataset) or {}),
        (f"methods.{method}", {key: value for key, value in method_block.items() if key != "datasets"}),
        (f"methods.{method}.datasets.{dataset}", (method_block.get("datasets") or {}).get(dataset) or {}),
        (f"grid.settings[{index}].train", setting.get("train") or {}),
        (f"grid.settings[{index}].methods.{method}", (setting.get("methods") or {}).get(method) or {}),
    ]


def train_settings(config: Mapping[str, Any], cell: Mapping[str, Any]) -> dict[str, Any]:
    """Every trainer and method setting of one cell: its layers applied in order, null values skipped."""
    settings: dict[str, Any] = {}
    for name, block in train_layers(config, cell):
        values = {key: value for key, value in block.items() if key != "set" and value is not None}
        extra = block.get("set") or {}
        both = sorted(values.keys() & extra.keys())
        if both:
            raise ConfigError(f"{name}: {', '.join(both)} given both as a key and under set; keep one")
        settings.update(values)
        settings.update(extra)
    return settings


def train_flags(config: Mapping[str, Any], cell: Mapping[str, Any], stage: int) -> str:
    """``--arch A --steps T --set key=value ...`` of one training run of ``cell`` (dataset, labels, imbalance, method)."""
    settings = train_settings(config, cell)
    missing = [key for key in ("arch", STEPS_KEYS[stage]) if key not in settings]
    if missing:
        raise ConfigError(f"train.{missing[0]}: not set for {dict(cell)}; give it under train")
    flags = ["--arch", settings.pop("arch"), "--steps", str(settings.pop(STEPS_KEYS[stage]))]
    for key, value in settings.items():
        if key not in STEPS_KEYS.values():
            flags += ["--set", f"{key}={_set_value(value)}"]
    return _join(flags)


def split_settings(config: Mapping[str, Any], cell: Mapping[str, Any]) -> dict[str, Any]:
    """``split`` with the keys its grid setting's ``split`` gives (not null) replacing them."""
    _, setting = grid_setting(config, cell)
    overrides = {key: value for key, value in (setting.get("split") or {}).items() if value is not None}
    return {**config["split"], **overrides}


def split_flags(config: Mapping[str, Any], cell: Mapping[str, Any]) -> str:
    """``hdl split`` options of the split of ``cell`` (dataset, labels, imbalance)."""
    split = split_settings(config, cell)
    flags = ["--unlabeled-ratio", format_value(float(split["unlabeled_ratio"]))]
    if split.get("unlabeled_imbalance") is not None:
        flags += ["--unlabeled-imbalance", format_value(float(split["unlabeled_imbalance"]))]
    return _join(flags + (["--include-labeled"] if split["include_labeled"] else []))


def data_flags(config: Mapping[str, Any]) -> str:
    flags = ["--data-dir", config["data_dir"]] + (["--download"] if config["download"] else [])
    folder = config["image_folder"]
    if folder["root"] is not None:
        flags += ["--image-folder", folder["root"], "--image-size", str(folder["image_size"])]
    return _join(flags)


def relabel_flags(config: Mapping[str, Any]) -> str:
    """HDL's and the selection's flags from the ``hdl`` block: `hdl relabel`'s, and every `hdl train`'s (its label
    probe and refresh label as `hdl relabel` does); the seed is the cell's, thread counts the job's."""
    hdl = config["hdl"]
    flags = ["--k", str(hdl["k"]), "--k-candidates", *map(str, hdl["k_candidates"]), "--folds", str(hdl["folds"]),
             "--holdout", format_value(float(hdl["holdout"])), "--wave-rule", hdl["wave_rule"],
             "--vote-weight", hdl["vote_weight"], "--labeler", hdl["labeler"]]
    if hdl["max_level"] is not None:
        flags += ["--max-level", str(hdl["max_level"])]
    flags += ["--min-agreement", format_value(float(hdl["min_agreement"])), "--weight", hdl["weight"],
              "--selection", hdl["selection"], "--confidence", hdl["confidence"],
              "--selection-quantile", format_value(float(hdl["selection_quantile"])), "--class-quota", hdl["class_quota"],
              "--crest-alpha", format_value(float(hdl["crest_alpha"])), "--temperature", format_value(float(hdl["temperature"]))]
    return _join(flags)


def extra_label_flags(config: Mapping[str, Any], extra_labels: str | Path) -> str:
    """``--extra-labels PATH`` of stage 2 with HDL labels (a path of ``hdl.layout``, as the rules write
    their paths), and ``--refresh-every E`` where ``hdl.refresh_every`` is set."""
    refresh_every = config["hdl"]["refresh_every"]
    return f"--extra-labels {extra_labels}" + (f" --refresh-every {refresh_every}" if refresh_every else "")


def stage2_run_name(round_number: int, variant: str, rounds: int) -> str:
    """wandb name of a stage-2 run inside its cell's group: hdl, baseline (hdl-round2, ... when rounds > 1)."""
    return variant if rounds == 1 else f"{variant}-round{round_number}"


def wandb_flags(config: Mapping[str, Any], cell: Mapping[str, str], name: str) -> str:
    """Tracking flags: one wandb group per cell, runs named by stage and variant."""
    group = "-".join(f"{column}~{cell[column]}" for column in layout.CELL)
    wandb = config["wandb"]
    return _join(["--wandb-mode", wandb["mode"], "--wandb-project", wandb["project"],
                  "--wandb-group", group, "--wandb-name", name])


def uses_gpu(config: Mapping[str, Any]) -> int:
    """GPUs a train or embed job asks the scheduler for."""
    return 0 if config["device"] == "cpu" else 1


def time_limit_warning(config: Mapping[str, Any]) -> str:
    """A training job's sbatch option (its ``slurm_extra``): ``STOP_SIGNAL`` ``resources.time_limit_margin_s``
    before the time limit, on which `hdl train` saves and stops (``hdl.training.stop_signal``).

    Not ``B:USR1``: that signals only the batch shell, which would die of it. Without ``B:``, SLURM
    signals every process of the job's steps, the Snakemake and the shell that run `hdl train` as
    well (``ignore_stop_signal``)."""
    margin, runtime = config["resources"]["time_limit_margin_s"], config["resources"]["train"]["runtime"]
    if margin >= 60 * runtime:
        raise ConfigError(
            f"resources.time_limit_margin_s: {margin} s is not shorter than resources.train.runtime ({runtime} min), "
            "so every training job would stop as it starts; lower the margin or raise the runtime"
        )
    return f"--signal={STOP_SIGNAL.name.removeprefix('SIG')}@{margin}"


def ignore_stop_signal() -> None:
    """Make this Snakemake, and the shells of the jobs it runs, ignore SLURM's time-limit warning.

    It reaches every process of a job step, and would kill them (and the job with them) before
    `hdl train` could save; `hdl train` replaces the ignoring it inherits with its own handler."""
    signal.signal(STOP_SIGNAL, signal.SIG_IGN)
