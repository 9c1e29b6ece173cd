"""The Snakemake workflow: lint, the DAG of each config, config errors before any job, and a real tiny run."""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hdl import layout, workflow
from hdl.docs import config_readme

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
TINY_CONFIG = ROOT / ".test" / "config.yaml"
TINY_CELL = "dataset~digits/labels~50/imbalance~1/method~fixmatch/seed~0"


def snakemake(workdir: Path, *args: str, config: Path = TINY_CONFIG, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run Snakemake on the project's Snakefile in ``workdir`` (so that results/ goes there)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", str(config),
               "--directory", str(workdir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    stats = output.split("Job stats:", 1)[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


# ---------------------------------------------------------------- the workflow as a whole


def test_lint_reports_nothing(tmp_path):
    result = snakemake(tmp_path, "--lint", config=ROOT / "config" / "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_default_grid_is_two_settings_by_two_methods_by_two_seeds(tmp_path):
    result = snakemake(tmp_path, "--dry-run", config=ROOT / "config" / "config.yaml")
    assert result.returncode == 0, result.stderr
    cells = 2 * 2 * 2
    assert job_counts(result.stdout) == {
        "split": 2 * 2,  # splits do not depend on the method
        "train_stage1": cells,
        "embed": cells,
        "relabel": cells,
        "train_stage2": 2 * cells,  # variant~hdl and variant~baseline
        "write_grid": 1,
        "aggregate": 1,
        "all": 1,
        "total": 4 + 5 * cells + 3,
    }


def test_paper_grid_lists_every_job_with_none_of_the_default_grid_settings(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text((ROOT / "config" / "config.yaml").read_text())
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", config=ROOT / "config" / "paper.yaml")
    assert result.returncode == 0, result.stderr
    # --configfile replaces config/config.yaml: nothing of the CPU grid leaks into the paper's runs
    assert "uratio=3" not in result.stdout and not re.search(r"ema=0\.9(?![0-9])", result.stdout)
    # CIFAR-10 (3 budgets) + CIFAR-100 (3) + CIFAR-10-LT (3 imbalance factors), 4 methods, 3 seeds
    settings, cells = 9, 9 * 4 * 3
    assert job_counts(result.stdout) == {
        "split": settings * 3,
        "train_stage1": cells,
        "embed": cells,
        "relabel": cells,
        "train_stage2": 2 * cells,
        "write_grid": 1,
        "aggregate": 1,
        "all": 1,
        "total": 27 + 5 * cells + 3,
    }
    commands = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines()
                if line.startswith("Shell command: hdl ")]
    (mixmatch_cifar100,) = [command for command in commands if "--init" not in command and command.startswith(
        "hdl train --dataset cifar100 --labels 400 --imbalance 1 --seed 0 --method mixmatch ")]
    assert "--set lambda_u=150 " in mixmatch_cifar100 and "--set weight_decay=0.001 " in mixmatch_cifar100
    long_tailed_splits = [command for command in commands if command.startswith("hdl split --dataset cifar10 --labels 1500 ")]
    assert len(long_tailed_splits) == 3 * 3 and not any("--include-labeled" in split for split in long_tailed_splits)


def test_paired_variants_and_rounds_chain_their_checkpoints(tmp_path):
    """Round 1: both variants start from stage 1 with the same steps; round 2 continues its own variant."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"]["seeds"] = [0]
    config["hdl"]["rounds"] = 2
    config["hdl"]["refresh_every"] = 5
    result = snakemake(tmp_path, "--dry-run", "--printshellcmds", config=write_config(tmp_path / "rounds.yaml", config))
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout)["embed"] == 2 and job_counts(result.stdout)["train_stage2"] == 4
    commands = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines()
                if line.startswith("Shell command: hdl ")]

    def command(subcommand: str, out_fragment: str) -> str:
        (found,) = [line for line in commands if line.startswith(f"hdl {subcommand} ") and out_fragment in line]
        return found

    run = f"results/runs/{TINY_CELL}"
    round1_hdl = command("train", "round~1/variant~hdl ")
    round1_baseline = command("train", "round~1/variant~baseline ")
    for stage2 in (round1_hdl, round1_baseline):
        assert f"--init {run}/stage1/checkpoint.pt" in stage2
        assert "--steps 20 " in stage2
    assert f"--extra-labels {run}/round~1/extra_labels.npz --refresh-every 5 " in round1_hdl
    assert "--extra-labels" not in round1_baseline and "--refresh-every" not in round1_baseline
    # every training run's label probe (and the refresh) labels with `hdl relabel`'s options, the cell's seed included
    relabel_options = command("relabel", "round~1/relabel.npz").split(" --extra-labels-out ")[1].split(" --threads ")[0]
    hdl_options = relabel_options.split(" ", 1)[1].replace(" --seed 0", "")
    assert "--k-candidates 5 10 " in hdl_options and "--confidence argmax_agreement " in hdl_options
    for training in (command("train", "stage1 "), round1_hdl, round1_baseline):
        assert f" {hdl_options} " in training and "--seed 0 " in training
    assert f"--init {run}/round~1/variant~hdl/checkpoint.pt" in command("train", "round~2/variant~hdl ")
    assert f"--init {run}/round~1/variant~baseline/checkpoint.pt" in command("train", "round~2/variant~baseline ")
    assert f"--checkpoint {run}/round~1/variant~hdl/checkpoint.pt" in command("embed", "round~2/embed.npz")
    assert "--wandb-group 'dataset~digits-labels~50-imbalance~1-method~fixmatch-seed~0' --wandb-name hdl-round2" in (
        command("train", "round~2/variant~hdl ")
    )


def test_unknown_config_key_stops_before_any_job_naming_it(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["train"]["stage1_stepz"] = 10
    result = snakemake(tmp_path, "--cores", "1", config=write_config(tmp_path / "typo.yaml", config))
    assert result.returncode != 0
    assert "train.stage1_stepz: unknown key" in result.stderr
    assert not (tmp_path / "results").exists()


def test_missing_dataset_fails_its_first_job_with_the_remedy(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["grid"]["settings"] = [{"dataset": "cifar10", "labels": [40]}]
    config["grid"]["seeds"] = [0]
    config["data_dir"] = str(tmp_path / "no-data")
    result = snakemake(tmp_path, "--cores", "1", config=write_config(tmp_path / "cifar.yaml", config))
    assert result.returncode != 0
    log = tmp_path / "results/logs/split/dataset~cifar10/labels~40/imbalance~1/seed~0.log"
    assert "Error in rule split" in result.stderr
    assert "download" in log.read_text()  # the remedy: set download, or put the files in data_dir
    assert not list((tmp_path / "results").glob("runs/**/*.json"))


def test_config_readme_is_generated_from_the_schema():
    schema = workflow.load_yaml(workflow.SCHEMA_PATH)
    assert (ROOT / "config" / "README.md").read_text() == config_readme.config_readme(schema), (
        f"config/README.md is stale: {config_readme.COMMAND}"
    )


def test_config_readme_marks_only_required_keys_required_and_every_key_has_a_default():
    rows = {}
    for line in config_readme.config_readme(workflow.load_yaml(workflow.SCHEMA_PATH)).splitlines():
        if line.startswith("| `"):
            key, _, default, description = (cell.strip() for cell in line.strip("|").split(" | "))
            rows[key.strip("`")] = (default, description)
    assert {key for key, (default, _) in rows.items() if default == "required"} == {
        "grid.settings[].dataset", "grid.settings[].labels"}
    assert rows["datasets.<dataset>.weight_decay"][0] == "`null`"
    assert rows["methods.<method>.datasets.<dataset>"][0] == "`{}`"
    assert all(default and description for default, description in rows.values()), [
        key for key, (default, description) in rows.items() if not (default and description)]


def test_schema_names_the_package_datasets_and_methods():
    from hdl.data import DATASET_NAMES
    from hdl.ssl import REGISTRY

    schema = workflow.load_yaml(workflow.SCHEMA_PATH)
    grid = schema["properties"]["grid"]["properties"]
    dataset = config_readme._resolve(grid["settings"]["items"]["properties"]["dataset"], schema)
    assert set(dataset["enum"]) == set(DATASET_NAMES)
    assert set(config_readme._resolve(grid["methods"]["items"], schema)["enum"]) == set(REGISTRY)
    assert set(config_readme._resolve(schema["properties"]["methods"]["propertyNames"], schema)["enum"]) == set(REGISTRY)


# ---------------------------------------------------------------- hdl.workflow


@pytest.fixture
def schema():
    return workflow.load_yaml(workflow.SCHEMA_PATH)


def test_check_config_names_every_bad_key_by_its_path(schema):
    config = {
        "grid": {"settings": [{"dataset": "digits", "labels": [50]}, {"dataset": "digits", "labelz": [5]}]},
        "train": {"stage1_steps": "many"},
        "hdl": {"k": "sometimes"},
        "wandb": {"mode": "loud"},
    }
    with pytest.raises(workflow.ConfigError) as error:
        workflow.check_config(config, schema)
    message = str(error.value)
    assert "grid.settings[1].labelz: unknown key" in message
    assert "grid.settings[1]: 'labels' is a required property" in message
    assert "train.stage1_steps: 'many' is not of type 'integer'" in message
    assert "hdl.k: 'sometimes' is not valid" in message
    assert "wandb.mode: 'loud' is not one of" in message


def test_check_config_names_an_unknown_data_set_or_method_key(schema):
    config = {
        "datasets": {"cifar1000": {"arch": "wrn-28-8"}},
        "methods": {"fixmatch": {"datasets": {"cifar100": {"threshold": 0.9}, "svhm": {"threshold": 0.9}}}},
        "grid": {"settings": [{"dataset": "digits", "labels": [50], "methods": {"fixmatc": {"uratio": 2}},
                               "split": {"include_labelled": False}}]},
    }
    with pytest.raises(workflow.ConfigError) as error:
        workflow.check_config(config, schema)
    message = str(error.value)
    assert "datasets.cifar1000: unknown key" in message
    assert "methods.fixmatch.datasets.svhm: unknown key" in message
    assert "grid.settings[0].methods.fixmatc: unknown key" in message
    assert "grid.settings[0].split.include_labelled: unknown key" in message


def test_training_jobs_ask_slurm_for_the_stop_signal_the_margin_before_their_time_limit():
    resources = {"train": {"threads": 1, "mem_mb": 1000, "runtime": 10}, "time_limit_margin_s": 300}
    assert workflow.time_limit_warning({"resources": resources}) == "--signal=USR1@300"
    # a warning due as the job starts would stop every attempt at its first step
    resources["train"]["runtime"] = 5
    with pytest.raises(workflow.ConfigError, match=r"resources\.time_limit_margin_s: 300 s is not shorter than "
                                                   r"resources\.train\.runtime \(5 min\)"):
        workflow.time_limit_warning({"resources": resources})


STUDY_LT = ROOT / "config" / "study_lt.yaml"
TUNED_KEYS = ("confidence", "class_quota")


def test_check_config_accepts_the_shipped_configs(schema):
    for path in [*sorted((ROOT / "config").glob("*.yaml")), TINY_CONFIG]:
        workflow.check_config(workflow.load_yaml(path), schema)


def test_the_preregistered_study_is_its_tuning_on_other_seeds_with_the_tuned_selection(schema):
    config = workflow.load_yaml(STUDY_LT)
    # a pre-registered study ships its tuned keys null until the tuning fills them: null refuses to run
    unfilled = copy.deepcopy(config)
    unfilled["hdl"] |= {key: None for key in TUNED_KEYS}
    with pytest.raises(workflow.ConfigError) as error:
        workflow.check_config(unfilled, schema)
    assert all(f"hdl.{key}: None is not one of" in str(error.value) for key in TUNED_KEYS)
    # the tuning runs the same study on its own seeds, and nothing else differs
    tuning = workflow.load_yaml(ROOT / "config" / "study_lt_tuning.yaml")
    assert set(config["grid"].pop("seeds")).isdisjoint(tuning["grid"].pop("seeds"))
    for key in TUNED_KEYS:
        del config["hdl"][key], tuning["hdl"][key]
    assert config == tuning


def test_the_trust_study_overlays_change_only_the_unlabeled_set_and_the_seeds(schema):
    from snakemake.utils import update_config

    study = ROOT / "config" / "study_trust"
    base = workflow.load_yaml(ROOT / "config" / "study_trust.yaml")
    settings = {"a": base, "b": copy.deepcopy(base)}
    update_config(settings["b"], workflow.load_yaml(study / "unlabeled_balanced.yaml"))
    assert settings["b"]["split"] == base["split"] | {"unlabeled_imbalance": 1}
    for config in settings.values():
        tuning = copy.deepcopy(config)
        update_config(tuning, workflow.load_yaml(study / "tuning.yaml"))
        for checked in (config, tuning):
            workflow.check_config(checked, schema)
        assert set(tuning["grid"].pop("seeds")).isdisjoint(config["grid"]["seeds"])
        assert tuning == {**config, "grid": {key: value for key, value in config["grid"].items() if key != "seeds"}}
    # the tuned values, each one of the candidates the protocol allows (studies/study_trust.py refuses nulls)
    tuned = workflow.load_yaml(study / "tuned.yaml")
    assert set(tuned) == {"temperature", "refresh_every", "refresh_trust"} and set(tuned["temperature"]) == {"a", "b"}
    assert set(tuned["temperature"].values()) <= {0.3, 1.5} and tuned["refresh_every"] in (100, 250)
    assert tuned["refresh_trust"] in ("distribution_aware", "entropy_balanced")


def test_grid_values_read_as_in_paths_and_splits_ignore_the_method():
    config = {
        "grid": {
            "settings": [{"dataset": "cifar10", "labels": [40, 250], "imbalance": [1]},
                         {"dataset": "cifar10", "labels": [1500], "imbalance": [50, 12.5]}],
            "methods": ["fixmatch", "mixmatch"],
            "seeds": [0, 1],
        }
    }
    cells = workflow.grid_table(config)
    assert len(cells) == 4 * 2 * 2
    assert list(cells.columns) == list(layout.CELL)
    assert set(cells["imbalance"]) == {"1", "50", "12.5"}
    splits = {layout.split_file(cell_values) for cell_values in cells.to_dict("records")}
    assert len(splits) == 4 * 2 and not any("method" in split for split in splits)


def test_grid_rejects_a_repeated_cell():
    config = {"grid": {"settings": [{"dataset": "digits", "labels": [50]}, {"dataset": "digits", "labels": [50]}],
                       "methods": ["fixmatch"], "seeds": [0]}}
    with pytest.raises(workflow.ConfigError, match="appears twice"):
        workflow.grid_table(config)


def cell(dataset: str, method: str, labels: int = 40, imbalance: float = 1) -> dict:
    return {"dataset": dataset, "labels": labels, "imbalance": imbalance, "method": method}


def test_train_flags_merge_dataset_and_method_overrides_and_skip_nulls():
    config = {
        "grid": {"settings": [{"dataset": "cifar10", "labels": [40]}, {"dataset": "cifar100", "labels": [40]}]},
        "train": {"arch": "wrn-28-2", "stage1_steps": 1000, "stage2_steps": 100, "batch_size": 64, "lr": None,
                  "weight_decay": 0.0005, "eval_every": None, "save_every": None, "set": {"ema": 0.999}},
        "datasets": {"cifar100": {"arch": "wrn-28-8", "weight_decay": 0.001, "set": {"nesterov": False}}},
        "methods": {"fixmatch": {"threshold": 0.9}},
    }
    assert workflow.train_flags(config, cell("cifar10", "mixmatch"), stage=1) == (
        "--arch wrn-28-2 --steps 1000 --set batch_size=64 --set weight_decay=0.0005 --set ema=0.999"
    )
    assert workflow.train_flags(config, cell("cifar100", "fixmatch"), stage=2) == (
        "--arch wrn-28-8 --steps 100 --set batch_size=64 --set weight_decay=0.001 --set ema=0.999"
        " --set nesterov=false --set threshold=0.9"
    )


def test_only_stage_2_with_hdl_labels_refreshes_them():
    config = {"hdl": {"refresh_every": 0}}
    assert workflow.extra_label_flags(config, "round~1/extra_labels.npz") == "--extra-labels round~1/extra_labels.npz"
    config["hdl"]["refresh_every"] = 50
    assert workflow.extra_label_flags(config, "x.npz") == "--extra-labels x.npz --refresh-every 50"


def test_train_settings_apply_the_six_layers_most_specific_last():
    config = {
        "grid": {"settings": [
            {"dataset": "cifar10", "labels": [40], "imbalance": [1]},
            {"dataset": "cifar10", "labels": [1500], "imbalance": [50, 100],
             "train": {"stage1_steps": 262144, "set": {"layer": 5}},
             "methods": {"fixmatch": {"uratio": 2, "deepest": 6}}},
        ]},
        "train": {"arch": "wrn-28-2", "stage1_steps": 1048576, "stage2_steps": 100, "set": {"layer": 1, "deepest": 1}},
        "datasets": {"cifar10": {"set": {"layer": 2}}},
        "methods": {"fixmatch": {"uratio": 7, "layer": 3, "datasets": {"cifar10": {"layer": 4, "threshold": 0.9}}}},
    }
    balanced = workflow.train_settings(config, cell("cifar10", "fixmatch"))
    assert (balanced["stage1_steps"], balanced["uratio"], balanced["layer"], balanced["threshold"]) == (1048576, 7, 4, 0.9)
    long_tailed = workflow.train_settings(config, cell("cifar10", "fixmatch", labels=1500, imbalance=100.0))
    assert (long_tailed["stage1_steps"], long_tailed["uratio"], long_tailed["layer"], long_tailed["deepest"]) == (
        262144, 2, 5, 6)
    # the setting's method block is only for its own method
    other_method = workflow.train_settings(config, cell("cifar10", "mixmatch", labels="1500", imbalance="50"))
    assert (other_method["stage1_steps"], other_method["layer"], other_method["deepest"]) == (262144, 5, 1)
    assert "uratio" not in other_method
    with pytest.raises(workflow.ConfigError, match="no setting holds dataset cifar10, labels 250"):
        workflow.train_settings(config, cell("cifar10", "fixmatch", labels=250))


def test_a_key_given_twice_in_one_layer_is_an_error():
    config = {"grid": {"settings": [{"dataset": "digits", "labels": [50]}]},
              "train": {"arch": "wrn-10-1", "stage1_steps": 10, "lr": 0.03, "set": {"lr": 0.1}}}
    with pytest.raises(workflow.ConfigError, match="train: lr given both as a key and under set"):
        workflow.train_flags(config, cell("digits", "fixmatch", labels=50), stage=1)


def test_split_flags_take_the_setting_split_options():
    config = {
        "grid": {"settings": [{"dataset": "cifar10", "labels": [40]},
                              {"dataset": "cifar10", "labels": [1500], "imbalance": [100],
                               "split": {"include_labeled": False, "unlabeled_ratio": None}}]},
        "split": {"unlabeled_ratio": 2.0, "include_labeled": True},
    }
    assert workflow.split_flags(config, cell("cifar10", "fixmatch")) == "--unlabeled-ratio 2 --include-labeled"
    long_tailed = {"dataset": "cifar10", "labels": "1500", "imbalance": "100", "seed": "0"}  # split wildcards: no method
    assert workflow.split_flags(config, long_tailed) == "--unlabeled-ratio 2"
    config["grid"]["settings"][1]["split"]["unlabeled_imbalance"] = 1
    assert workflow.split_flags(config, long_tailed) == "--unlabeled-ratio 2 --unlabeled-imbalance 1"


def paper_cells() -> dict[tuple, dict[str, str]]:
    """Every cell of config/paper.yaml, stage 1, as {(dataset, labels, imbalance, method): {flag or --set key: value}}."""
    import shlex

    config = workflow.load_yaml(ROOT / "config" / "paper.yaml")
    cells = {}
    for cell_values in workflow.grid_table(config).to_dict("records"):
        flags = shlex.split(workflow.train_flags(config, cell_values, stage=1))
        values = dict(zip(flags[0::2], flags[1::2]))
        values.pop("--set")
        values.update(assignment.split("=", 1) for assignment in flags[flags.index("--set") + 1::2])
        values["split"] = workflow.split_flags(config, cell_values)
        cells[tuple(cell_values[column] for column in ("dataset", "labels", "imbalance", "method"))] = values
    return cells


def test_paper_grid_gives_each_cell_usb_settings():
    cells = paper_cells()
    assert len(cells) == 9 * 4
    for labels in ("400", "2500", "10000"):
        mixmatch = cells["cifar100", labels, "1", "mixmatch"]
        assert (mixmatch["lambda_u"], mixmatch["mixup_alpha"], mixmatch["uratio"], mixmatch["weight_decay"]) == (
            "150", "0.5", "1", "0.001")
        assert mixmatch["--arch"] == "wrn-28-8" and mixmatch["--steps"] == "1048576"
        assert cells["cifar100", labels, "1", "fixmatch"]["weight_decay"] == "0.001"
    assert cells["cifar10", "40", "1", "mixmatch"]["lambda_u"] == "100"
    assert cells["cifar10", "4000", "1", "fixmatch"]["uratio"] == "7"
    assert cells["cifar10", "250", "1", "freematch"]["lambda_fairness"] == "0.001"
    for imbalance in ("50", "100", "150"):
        long_tailed = {method: cells["cifar10", "1500", imbalance, method]
                       for method in ("mixmatch", "remixmatch", "fixmatch", "freematch")}
        assert {values["--steps"] for values in long_tailed.values()} == {"262144"}
        assert long_tailed["fixmatch"]["uratio"] == long_tailed["freematch"]["uratio"] == "2"
        assert long_tailed["remixmatch"]["uratio"] == "1"
        # labeled samples stay out of the unlabeled stream (USB's include_lb_to_ulb: False)
        assert {values["split"] for values in long_tailed.values()} == {"--unlabeled-ratio 2"}
    assert cells["cifar10", "40", "1", "fixmatch"]["split"] == "--unlabeled-ratio 2 --include-labeled"
    assert {values["precision"] for values in cells.values()} == {"fp32"}


def test_paper_grid_settings_are_all_known_to_the_trainer():
    from hdl.training.settings import resolve_settings

    parsed = {}
    for cell_key, values in paper_cells().items():
        assignments = [f"{key}={value}" for key, value in values.items() if not key.startswith("-") and key != "split"]
        parsed[cell_key] = resolve_settings(cell_key[-1], assignments)  # an unknown key raises
    train, mixmatch = parsed["cifar100", "400", "1", "mixmatch"]
    assert (mixmatch.lambda_u, mixmatch.mixup_alpha, train.uratio, train.weight_decay, train.precision) == (
        150, 0.5, 1, 0.001, "fp32")
    train, _ = parsed["cifar10", "1500", "150", "fixmatch"]
    assert (train.uratio, train.eval_every) == (2, 1024)


def test_relabel_flags_leave_out_an_unset_max_level():
    hdl = {"k": "auto", "k_candidates": [5, 10], "folds": 3, "holdout": 0.2, "wave_rule": "max_count",
           "vote_weight": "similarity", "labeler": "knn_vote", "max_level": None, "min_agreement": 0.0, "weight": "agreement",
           "selection": "confident", "confidence": "consistency", "selection_quantile": 0.1, "class_quota": "labeled", "crest_alpha": 3.0,
           "temperature": 0.3}
    flags = workflow.relabel_flags({"hdl": hdl})
    assert flags == ("--k auto --k-candidates 5 10 --folds 3 --holdout 0.2 --wave-rule max_count"
                     " --vote-weight similarity --labeler knn_vote --min-agreement 0 --weight agreement"
                     " --selection confident --confidence consistency --selection-quantile 0.1 --class-quota labeled --crest-alpha 3"
                     " --temperature 0.3")
    assert "--max-level 2 " in workflow.relabel_flags({"hdl": {**hdl, "max_level": 2}})


# ---------------------------------------------------------------- real runs


@pytest.mark.slow
def test_tiny_grid_resumes_a_killed_training_job_and_ends_in_tables_and_report(tmp_path):
    checkpoint = tmp_path / "results/runs" / TINY_CELL / "stage1/checkpoint.pt"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--configfile", str(TINY_CONFIG),
               "--directory", str(tmp_path), "--cores", "2"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            assert first.poll() is None, "the run ended before stage 1 saved a checkpoint"
            assert time.monotonic() < deadline, "no stage-1 checkpoint within 5 minutes"
            time.sleep(0.1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # Snakemake and its jobs, as a crash or an OOM kill would
        first.wait()
    import torch

    saved_step = torch.load(checkpoint, map_location="cpu", weights_only=True)["step"]
    assert 0 < saved_step < 40
    assert not checkpoint.with_name("metrics.json").exists()

    # what Snakemake tells the user after a crash: unlock, rerun the incomplete job
    assert snakemake(tmp_path, "--unlock").returncode == 0
    result = snakemake(tmp_path, "--cores", "2", "--rerun-incomplete")
    assert result.returncode == 0, result.stderr[-3000:]

    # the rerun continued from the saved step: its log shows only later evaluations
    log = (tmp_path / "results/logs" / TINY_CELL / "stage1.log").read_text()
    evaluated = [int(step) for step in re.findall(r"step (\d+): top1", log)]
    assert evaluated and min(evaluated) > saved_step and max(evaluated) == 40

    tables = tmp_path / "results/tables"
    accuracy = (tables / "accuracy.md").read_text()
    assert "FixMatch + HDL" in accuracy and "digits, 50 labels" in accuracy
    assert re.search(r"\| FixMatch \+ HDL \| \d+\.\d+ ± \d+\.\d+ \|", accuracy), accuracy
    assert "digits" in (tables / "pseudo_labels.md").read_text()
    for plot in ("accuracy", "hdl_gain", "pseudo_label_accuracy", "training_curves", "probe_accuracy", "refresh"):
        assert (tmp_path / "results/plots" / f"{plot}.png").read_bytes()[:4] == b"\x89PNG"

    report = snakemake(tmp_path, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "results/report.html").stat().st_size > 10_000
