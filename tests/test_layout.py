"""hdl.layout: the paths of a cell, their Snakemake patterns, and reading coordinates back from a path."""

from __future__ import annotations

from pathlib import PurePath

from hdl import layout

CELL = {"dataset": "cifar10", "labels": "1500", "imbalance": "100", "method": "fixmatch", "seed": "2"}
CELL_DIR = "results/runs/dataset~cifar10/labels~1500/imbalance~100/method~fixmatch/seed~2"


def test_paths_of_one_cell():
    assert layout.cell_dir(CELL) == CELL_DIR
    assert layout.split_file(CELL) == "results/splits/dataset~cifar10/labels~1500/imbalance~100/seed~2.npz"
    assert layout.stage1_dir(CELL) == f"{CELL_DIR}/stage1"
    assert layout.round_dir({**CELL, "round": 3}) == f"{CELL_DIR}/round~3"
    assert layout.stage2_dir({**CELL, "round": 3, "variant": "baseline"}) == f"{CELL_DIR}/round~3/variant~baseline"
    assert layout.stage2_log({**CELL, "round": 1, "variant": "hdl"}) == (
        "results/logs/dataset~cifar10/labels~1500/imbalance~100/method~fixmatch/seed~2/round~1/variant~hdl.log")


def test_wildcards_give_the_snakemake_pattern_of_the_same_path():
    pattern = layout.stage2_dir(layout.WILDCARDS)
    assert pattern == ("results/runs/dataset~{dataset}/labels~{labels}/imbalance~{imbalance}/method~{method}"
                       "/seed~{seed}/round~{round}/variant~{variant}")
    assert pattern.format(**CELL, round=2, variant="hdl") == layout.stage2_dir({**CELL, "round": 2, "variant": "hdl"})


def test_stage2_continues_stage1_then_its_own_variant():
    assert layout.start_dir({**CELL, "round": "1", "variant": "baseline"}) == layout.stage1_dir(CELL)
    assert layout.start_dir({**CELL, "round": 3, "variant": "baseline"}) == f"{CELL_DIR}/round~2/variant~baseline"


def test_run_folders_read_back_as_their_coordinates():
    def parse(path: str):
        return layout.parse_run_dir(PurePath(path).relative_to(layout.RUNS))

    assert parse(layout.stage1_dir(CELL)) == {**CELL, "round": layout.STAGE1_ROUND, "variant": layout.STAGE1}
    assert parse(layout.stage2_dir({**CELL, "round": 2, "variant": "hdl"})) == {**CELL, "round": "2", "variant": "hdl"}
    assert parse(layout.round_dir({**CELL, "round": 1})) == {**CELL, "round": "1", "variant": None}
    assert parse(layout.cell_dir(CELL)) is None  # a cell folder holds runs but is none
    assert layout.parse_run_dir("dataset~cifar10/labels~1500/stage1") is None  # method and seed missing
