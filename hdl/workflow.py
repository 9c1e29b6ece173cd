"""What the Snakemake workflow needs from Python: config checking, the grid, and config -> `hdl` flags.

The rules in ``workflow/rules/*.smk`` stay thin: each calls one ``hdl``
subcommand with paths, wildcards and the flag strings built here, so that
everything worth testing is reachable without Snakemake.

``python -m hdl.workflow config-readme`` prints config/README.md from the
config schema (a test keeps the committed file in sync).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

from hdl.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"
GRID_COLUMNS = ("dataset", "labels", "imbalance", "method", "seed")
SPLIT_COLUMNS = ("dataset", "labels", "imbalance", "seed")
#: train settings that `hdl train` takes as flags; every other key goes through --set
TRAIN_FLAG_KEYS = ("arch", "stage1_steps", "stage2_steps", "set")


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
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(key for key in error.instance if key not in allowed)
        prefix = f"{where}." if where else ""
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return "; ".join(f"{prefix}{key}: unknown key{hint}" for key in unknown)
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


def grid_table(config: Mapping[str, Any]):
    """One row per cell (dataset, labels, imbalance, method, seed), values formatted as they appear in paths."""
    import pandas as pd

    grid = config["grid"]
    rows = [
        (setting["dataset"], format_value(labels), format_value(float(imbalance)), method, format_value(seed))
        for setting in grid["settings"]
        for labels in setting["labels"]
        for imbalance in setting.get("imbalance", [1])
        for method in grid["methods"]
        for seed in grid["seeds"]
    ]
    table = pd.DataFrame(rows, columns=list(GRID_COLUMNS), dtype=str)
    duplicated = table[table.duplicated()]
    if len(duplicated):
        first = dict(duplicated.iloc[0])
        raise ConfigError(f"grid: the cell {first} appears twice; remove the repeated label budget or imbalance factor")
    return table


def split_table(cells):
    """The splits the cells need: one per (dataset, labels, imbalance, seed), whatever the method."""
    return cells[list(SPLIT_COLUMNS)].drop_duplicates().reset_index(drop=True)


def write_grid(cells, path: str | Path, log_path: str | Path) -> None:
    """results/grid.csv: the cells the tables must show, finished or not."""
    from hdl.io import atomic_path

    with atomic_path(path) as tmp:
        cells.to_csv(tmp, index=False)
    Path(log_path).write_text(f"wrote {len(cells)} cells to {path}\n")


# ---------------------------------------------------------------- flags


def _join(flags: Iterable[str]) -> str:
    return " ".join(shlex.quote(flag) for flag in flags)


def _set_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else format_value(value)


def train_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """``train`` with the keys of ``datasets[dataset]`` replacing it (``set`` merged key by key)."""
    overrides = config.get("datasets", {}).get(dataset, {})
    settings = {**config["train"], **{key: value for key, value in overrides.items() if key != "set"}}
    settings["set"] = {**config["train"].get("set", {}), **overrides.get("set", {})}
    return settings


def train_flags(config: Mapping[str, Any], dataset: str, method: str, stage: int) -> str:
    """``--arch A --steps T --set key=value ...`` of one training run; null settings keep the trainer's defaults."""
    settings = train_settings(config, dataset)
    flags = ["--arch", settings["arch"], "--steps", str(settings[f"stage{stage}_steps"])]
    values = {key: value for key, value in settings.items() if key not in TRAIN_FLAG_KEYS and value is not None}
    values.update(settings["set"])
    values.update(config.get("methods", {}).get(method, {}))
    for key, value in values.items():
        flags += ["--set", f"{key}={_set_value(value)}"]
    return _join(flags)


def data_flags(config: Mapping[str, Any]) -> str:
    return _join(["--data-dir", config["data_dir"]] + (["--download"] if config["download"] else []))


def split_flags(config: Mapping[str, Any]) -> str:
    split = config["split"]
    flags = ["--unlabeled-ratio", format_value(float(split["unlabeled_ratio"]))]
    return _join(flags + (["--include-labeled"] if split["include_labeled"] else []))


def relabel_flags(config: Mapping[str, Any]) -> str:
    hdl = config["hdl"]
    flags = ["--k", str(hdl["k"]), "--k-candidates", *map(str, hdl["k_candidates"]), "--folds", str(hdl["folds"]),
             "--holdout", format_value(float(hdl["holdout"])), "--wave-rule", hdl["wave_rule"],
             "--vote-weight", hdl["vote_weight"]]
    if hdl["max_level"] is not None:
        flags += ["--max-level", str(hdl["max_level"])]
    flags += ["--min-agreement", format_value(float(hdl["min_agreement"])), "--weight", hdl["weight"]]
    return _join(flags)


def stage2_run_name(round_number: int, variant: str, rounds: int) -> str:
    """wandb name of a stage-2 run inside its cell's group: hdl, baseline (hdl-round2, ... when rounds > 1)."""
    return variant if rounds == 1 else f"{variant}-round{round_number}"


def wandb_flags(config: Mapping[str, Any], cell: Mapping[str, str], name: str) -> str:
    """Tracking flags: one wandb group per cell, runs named by stage and variant."""
    group = "-".join(f"{column}~{cell[column]}" for column in GRID_COLUMNS)
    wandb = config["wandb"]
    return _join(["--wandb-mode", wandb["mode"], "--wandb-project", wandb["project"],
                  "--wandb-group", group, "--wandb-name", name])


def uses_gpu(config: Mapping[str, Any]) -> int:
    """GPUs a train or embed job asks the scheduler for."""
    return 0 if config["device"] == "cpu" else 1


# ---------------------------------------------------------------- paths inside a cell


def start_run(round_number: int, variant: str) -> str:
    """metrics.json of the run whose checkpoint stage 2 of ``round_number`` continues (relative to the cell).

    Round 1 starts both variants from stage 1: the paired comparison.  Round
    R > 1 continues round R-1 of the same variant; embeddings of round R come
    from round R-1's HDL model.
    """
    if round_number == 1:
        return "stage1/metrics.json"
    return f"round~{round_number - 1}/variant~{variant}/metrics.json"


# ---------------------------------------------------------------- config/README.md


def config_readme(schema: Mapping[str, Any]) -> str:
    """Markdown listing every config key with its type, default and description."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from `workflow/schemas/config.schema.yaml` by `python -m hdl.workflow config-readme > config/README.md`;",
        "`tests/test_workflow.py` checks that this file is in sync. `config/config.yaml` is the default grid (CPU,",
        "minutes), `config/paper.yaml` the paper's grid (GPU cluster), `.test/config.yaml` the tests' tiny grid.",
        "An unknown key or a value of the wrong type stops Snakemake before any job starts, naming the key.",
        "",
        "| key | type | default | description |",
        "| --- | --- | --- | --- |",
    ]
    for key, node in _walk(schema, schema, ""):
        lines.append(f"| `{key}` | {_type_name(node, schema)} | {_default_text(node)} | {_flat(node.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def _resolve(node: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """The node with its ``$ref`` target merged in (the node's own keys win)."""
    if "$ref" not in node:
        return dict(node)
    target: Any = schema
    for part in node["$ref"].removeprefix("#/").split("/"):
        target = target[part]
    merged = _resolve(target, schema)
    merged.update({key: value for key, value in node.items() if key != "$ref"})
    return merged


def _walk(node: Mapping[str, Any], schema: Mapping[str, Any], prefix: str):
    node = _resolve(node, schema)
    for name, child in node.get("properties", {}).items():
        child = _resolve(child, schema)
        key = f"{prefix}{name}"
        yield key, child
        if child.get("type") == "object":
            yield from _walk(child, schema, f"{key}.")
        if child.get("type") == "array" and "properties" in _resolve(child.get("items", {}), schema):
            yield from _walk(child["items"], schema, f"{key}[].")


def _type_name(node: Mapping[str, Any], schema: Mapping[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{value}`" for value in node["enum"])
    if "anyOf" in node:
        return " \\| ".join(f"`{branch['const']}`" if "const" in branch else branch.get("type", "?") for branch in node["anyOf"])
    kind = node.get("type", "?")
    if kind == "array":
        item = _resolve(node.get("items", {}), schema)
        return f"list of {_type_name(item, schema) if 'properties' not in item else 'objects'}"
    if kind == "object" and "properties" not in node:
        return "mapping"
    return " \\| ".join(kind) if isinstance(kind, list) else kind


def _default_text(node: Mapping[str, Any]) -> str:
    if "default" not in node:
        return "required" if node.get("type") != "object" else ""
    import json

    return f"`{json.dumps(node['default'])}`"


def _flat(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hdl.workflow", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["config-readme"], help="print config/README.md generated from the schema")
    parser.parse_args(argv)
    sys.stdout.write(config_readme(load_yaml(SCHEMA_PATH)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
