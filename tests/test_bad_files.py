"""Every file a command reads, broken every way the tables below list: exit 2, one line naming the file, nothing written.

The cases are generated: CONSUMERS (a command and the file it reads) x CORRUPTIONS, for each
corruption that applies to the consumer's file KIND.  The valid files come from one tiny digits
cell made once by the commands themselves (split, two training steps, embed, relabel).
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch

from hdl.cell import Cell
from hdl.cli import SUBCOMMANDS, main
from hdl.errors import UserError
from hdl.files import CHECKPOINT_KEYS, read_checkpoint, read_embeddings, read_extra_labels, read_metrics
from hdl.files import read_relabel_output, read_relabel_report, read_split

CELL_FLAGS = ["--dataset", "digits", "--labels", "40", "--seed", "0"]
TINY = [*CELL_FLAGS, "--arch", "wrn-10-1", "--threads", "1", "--no-progress", "--set", "batch_size=8", "--set", "uratio=1"]
METHOD = "supervised"
STAGE1 = [*TINY, "--method", METHOD, "--steps", "2"]
RELABEL = ["--k", "5", "--folds", "1", "--selection", "all"]
CELL_DIR = Path("dataset~digits/labels~40/imbalance~1/method~supervised/seed~0")
FOLDER = {"dataset": "digits", "labels": "40", "imbalance": "1", "method": METHOD, "seed": "0"}


class World:
    """The valid files of one digits cell, and a split of another (seed 1)."""

    def __init__(self, root: Path):
        self.split, self.other_split = root / "split.npz", root / "split_seed1.npz"
        self.run = root / "run"
        self.checkpoint, self.metrics = self.run / "checkpoint.pt", self.run / "metrics.json"
        self.embed, self.relabel, self.report, self.extra = (
            root / "embed.npz", root / "relabel.npz", root / "relabel.json", root / "extra_labels.npz"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    world = World(tmp_path_factory.mktemp("world"))
    assert main(["split", *CELL_FLAGS, "--out", str(world.split)]) == 0
    assert main(["split", *CELL_FLAGS[:-1], "1", "--out", str(world.other_split)]) == 0
    assert main(["train", *STAGE1, "--split", str(world.split), "--out", str(world.run)]) == 0
    assert main(["embed", "--checkpoint", str(world.checkpoint), "--dataset", "digits", "--split", str(world.split),
                 "--threads", "1", "--out", str(world.embed)]) == 0
    assert main(["relabel", "--embeddings", str(world.embed), *RELABEL, "--out", str(world.relabel),
                 "--report", str(world.report), "--extra-labels-out", str(world.extra)]) == 0
    return world


# ---------------------------------------------------------------- file kinds: valid content, how it is saved, how it breaks


def npz_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, array)


def save_json(path: Path, record: dict) -> None:
    path.write_text(json.dumps(record))


def changed(arrays: dict, key: str, edit: Callable[[np.ndarray], np.ndarray]) -> dict:
    return {**arrays, key: edit(arrays[key].copy())}


def renamed(mapping: dict, old: str, new: str) -> dict:
    return {new if key == old else key: value for key, value in mapping.items()}


def at(position: int, value: Any, dtype: Any = None) -> Callable[[np.ndarray], np.ndarray]:
    """An edit that sets ``values[position]`` (after a cast to ``dtype``, if given)."""
    def edit(values: np.ndarray) -> np.ndarray:
        values = values.astype(dtype or values.dtype)
        values[position] = value
        return values
    return edit


def first_twice(values: np.ndarray) -> np.ndarray:
    values[1] = values[0]
    return values


def of_cell(arrays: dict, **fields) -> dict:
    """The same arrays recorded as made for another cell."""
    cell = json.loads(str(arrays["cell"]))
    return {**arrays, **Cell.of({**cell, **fields}).arrays()}


def json_with_repeated_key(record: dict, key: str) -> bytes:
    return ("{" + json.dumps(key) + ": " + json.dumps(record[key]) + ", " + json.dumps(record)[1:]).encode()


def idx_bytes(values: np.ndarray, type_code: int = 0x08) -> bytes:
    """An idx file (the MNIST format), gzipped: magic, dimensions, then the values."""
    header = bytes([0, 0, type_code, values.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in values.shape)
    return gzip.compress(header + values.astype(">u1" if type_code == 0x08 else ">f4").tobytes())


FAKE_TRAIN_LABELS = np.arange(200) % 10  # a stand-in Fashion-MNIST of 200 training images


@dataclass(frozen=True)
class Kind:
    """A file kind: its valid content (from the world), how it is written, and content-level corruptions.

    An edit returns the bad content (written with ``save``) or raw bytes (written as they are).
    """

    suffix: str
    valid: Callable[[World], Any]
    save: Callable[[Path, Any], None]
    edits: dict[str, Callable[[Any], Any]] = field(default_factory=dict)


KINDS = {
    "split": Kind(".npz", lambda w: npz_arrays(w.split), save_npz, {
        "a pickle": lambda a: changed(a, "labeled_idx", lambda v: v.astype(object)),
        "wrong keys": lambda a: renamed(a, "labeled_idx", "labeled"),
        "wrong dtype": lambda a: changed(a, "labeled_idx", lambda v: v + 0.5),
        "out-of-range indices": lambda a: changed(a, "labeled_idx", at(0, 10**6)),
        "duplicate indices": lambda a: changed(a, "labeled_idx", first_twice),
        "NaN": lambda a: changed(a, "labeled_idx", at(0, np.nan, np.float64)),
        "another cell": lambda a: of_cell(a, seed=1),
    }),
    "extra labels": Kind(".npz", lambda w: npz_arrays(w.extra), save_npz, {
        "a pickle": lambda a: changed(a, "index", lambda v: v.astype(object)),
        "wrong keys": lambda a: renamed(a, "index", "idx"),
        "wrong dtype": lambda a: changed(a, "label", lambda v: v + 0.5),
        "out-of-range indices": lambda a: changed(a, "index", at(0, 10**6)),
        "duplicate indices": lambda a: changed(a, "index", first_twice),
        "NaN": lambda a: changed(a, "weight", at(0, np.nan)),
        "another cell": lambda a: of_cell(a, seed=1),
    }),
    "embeddings .npz": Kind(".npz", lambda w: npz_arrays(w.embed), save_npz, {
        "a pickle": lambda a: changed(a, "embeddings", lambda v: v.astype(object)),
        "wrong keys": lambda a: renamed(a, "embeddings", "features"),
        "wrong dtype": lambda a: changed(a, "embeddings", lambda v: v.astype(str)),
        "out-of-range indices": lambda a: changed(a, "labels", at(0, 10)),
        "duplicate indices": lambda a: changed(a, "index", first_twice),
        "NaN": lambda a: changed(a, "embeddings", at(3, np.nan)),
    }),
    "embeddings .npy": Kind(".npy", lambda w: npz_arrays(w.embed)["embeddings"], save_npy, {
        "a pickle": lambda v: v.astype(object),
        "wrong dtype": lambda v: v.astype(str),
        "NaN": at(3, np.nan),
    }),
    "labels .npy": Kind(".npy", lambda w: npz_arrays(w.embed)["labels"], save_npy, {
        "a pickle": lambda v: v.astype(object),
        "wrong dtype": lambda v: v + 0.5,
        "out-of-range indices": at(0, -2),
        "NaN": at(0, np.nan, np.float64),
    }),
    "checkpoint": Kind(".pt", lambda w: torch.load(w.checkpoint, weights_only=True), lambda path, state: torch.save(state, path), {
        "a pickle": lambda s: {**s, "args": argparse.Namespace(lr=0.03)},
        "wrong keys": lambda s: {key: value for key, value in s.items() if key != "ema_model"},
        "wrong dtype": lambda s: {**s, "config": {**s["config"], "labels": "forty"}},
        "NaN": lambda s: {**s, "ema_model": {key: value.float().fill_(np.nan) if key.endswith("weight") else value
                                             for key, value in s["ema_model"].items()}},
        "another cell": lambda s: {**s, "config": {**s["config"], "seed": 1}},
    }),
    "metrics.json": Kind(".json", lambda w: json.loads(w.metrics.read_text()), save_json, {
        "a pickle": pickle.dumps,
        "wrong keys": lambda r: renamed(r, "top1", "accuracy"),
        "wrong dtype": lambda r: {**r, "top1": str(r["top1"])},
        "out-of-range indices": lambda r: {**r, "top1": 100 * r["top1"] + 1},
        "duplicate indices": lambda r: json_with_repeated_key(r, "top1"),
        "NaN": lambda r: {**r, "top1": float("nan")},
        "another cell": lambda r: {**r, "seed": 1},
    }),
    "relabel.json": Kind(".json", lambda w: json.loads(w.report.read_text()), save_json, {
        "a pickle": pickle.dumps,
        "wrong keys": lambda r: renamed(r, "coverage", "reached"),
        "wrong dtype": lambda r: {**r, "k": "auto"},
        "out-of-range indices": lambda r: {**r, "coverage": 1.5},
        "duplicate indices": lambda r: json_with_repeated_key(r, "coverage"),
        "NaN": lambda r: {**r, "accuracy": float("nan")},
        "another cell": lambda r: {**r, "cell": {**r["cell"], "seed": 1}},
    }),
    "grid.csv": Kind(".csv", lambda w: "dataset,labels,imbalance,method,seed\ndigits,40,1,supervised,0\n",
                     lambda path, text: path.write_text(text), {
        "a pickle": lambda text: pickle.dumps(text.splitlines()),
        "wrong keys": lambda text: text.replace("method", "algorithm"),
        "wrong dtype": lambda text: text.replace("supervised,0", "supervised,zero"),
        "NaN": lambda text: text.replace("supervised,0", "supervised,"),
    }),
    "Fashion-MNIST labels": Kind(".gz", lambda w: FAKE_TRAIN_LABELS, lambda path, v: path.write_bytes(idx_bytes(v)), {
        "a pickle": lambda v: pickle.dumps(v.tolist()),
        "wrong dtype": lambda v: idx_bytes(v, type_code=0x0D),
        "out-of-range indices": at(0, 10),
    }),
}
def bad_bytes(valid: bytes) -> dict[str, bytes]:
    """Corruptions of any file, made from its valid bytes."""
    return {
        "empty": b"",
        "truncated": valid[: len(valid) // 2],
        "random bytes": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }


CORRUPTIONS = ["empty", "truncated", "random bytes", "a pickle", "wrong keys", "wrong dtype", "out-of-range indices",
               "duplicate indices", "NaN", "another cell"]


def write_bad(kind: Kind, corruption: str, world: World, path: Path) -> None:
    valid = kind.valid(world)
    if corruption in kind.edits:
        bad = kind.edits[corruption](valid)
        if isinstance(bad, bytes):
            path.write_bytes(bad)
        else:
            kind.save(path, bad)
        return
    kind.save(path, valid)
    path.write_bytes(bad_bytes(path.read_bytes())[corruption])


def applies(kind: Kind, corruption: str) -> bool:
    return corruption in kind.edits or corruption in ("empty", "truncated", "random bytes")


# ---------------------------------------------------------------- consumers: a command and the file it reads


@dataclass(frozen=True)
class Consumer:
    """``argv(case, bad, world)``: the command reading the bad file; ``outputs(case)``: what it must not write;
    ``place(case)``: where the bad file goes; ``prepare(case, world)``: the valid files around it."""

    kind: str
    argv: Callable[[Path, Path, World], list[str]]
    outputs: Callable[[Path], list[Path]]
    place: Callable[[Path], Path] | None = None
    prepare: Callable[[Path, World], None] = lambda case, world: None


def stage2(case: Path, world: World, *flags: str) -> list[str]:
    return ["train", *TINY, "--method", METHOD, "--steps", "1", "--split", str(world.split), *flags, "--out", str(case / "out")]


def finished_run(case: Path, world: World) -> None:
    (case / "run").mkdir()
    shutil.copy(world.checkpoint, case / "run" / "checkpoint.pt")


def runs_tree(case: Path, world: World) -> None:
    cell = case / "runs" / CELL_DIR
    (cell / "stage1").mkdir(parents=True)
    (cell / "round~1").mkdir()
    shutil.copy(world.metrics, cell / "stage1" / "metrics.json")
    shutil.copy(world.report, cell / "round~1" / "relabel.json")


def fake_fashion_mnist(case: Path, world: World) -> None:
    folder = case / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    images = np.random.default_rng(0).integers(0, 256, (200, 28, 28), dtype=np.uint8)
    for name, values in (("train-images-idx3-ubyte", images), ("t10k-images-idx3-ubyte", images[:20]),
                         ("train-labels-idx1-ubyte", FAKE_TRAIN_LABELS), ("t10k-labels-idx1-ubyte", FAKE_TRAIN_LABELS[:20])):
        (folder / f"{name}.gz").write_bytes(idx_bytes(values))


def relabel(embeddings: Path, *flags: str, case: Path) -> list[str]:
    return ["relabel", "--embeddings", str(embeddings), *flags, *RELABEL, "--out", str(case / "out.npz"),
            "--report", str(case / "out.json"), "--extra-labels-out", str(case / "extra.npz")]


def save_valid(case: Path, world: World) -> None:
    arrays = npz_arrays(world.embed)
    save_npy(case / "embeddings.npy", arrays["embeddings"])
    save_npy(case / "labels.npy", arrays["labels"])


RELABEL_OUTPUTS = lambda case: [case / "out.npz", case / "out.json", case / "extra.npz"]  # noqa: E731
CONSUMERS = {
    "split --data-dir": Consumer(
        "Fashion-MNIST labels",
        lambda case, bad, world: ["split", "--dataset", "fashion_mnist", "--labels", "40", "--data-dir", str(case / "data"),
                                  "--out", str(case / "split.npz")],
        lambda case: [case / "split.npz"],
        place=lambda case: case / "data" / "fashion-mnist" / "train-labels-idx1-ubyte.gz",
        prepare=fake_fashion_mnist,
    ),
    "train --split": Consumer(
        "split", lambda case, bad, world: ["train", *STAGE1, "--split", str(bad), "--out", str(case / "out")],
        lambda case: [case / "out"],
    ),
    "train --extra-labels": Consumer(
        "extra labels", lambda case, bad, world: stage2(case, world, "--extra-labels", str(bad)), lambda case: [case / "out"],
    ),
    "train --init": Consumer(
        "checkpoint", lambda case, bad, world: stage2(case, world, "--init", str(bad)), lambda case: [case / "out"],
    ),
    "train --out, resuming": Consumer(
        "checkpoint", lambda case, bad, world: ["train", *STAGE1, "--split", str(world.split), "--out", str(case / "run")],
        lambda case: [case / "run" / "metrics.json"],
        place=lambda case: case / "run" / "checkpoint.pt",
        prepare=lambda case, world: (case / "run").mkdir(),
    ),
    "train --out, finished": Consumer(
        "metrics.json", lambda case, bad, world: ["train", *STAGE1, "--split", str(world.split), "--out", str(case / "run")],
        lambda case: [],
        place=lambda case: case / "run" / "metrics.json",
        prepare=finished_run,
    ),
    "embed --checkpoint": Consumer(
        "checkpoint",
        lambda case, bad, world: ["embed", "--checkpoint", str(bad), "--dataset", "digits", "--split", str(world.split),
                                  "--threads", "1", "--out", str(case / "embed.npz")],
        lambda case: [case / "embed.npz"],
    ),
    "embed --split": Consumer(
        "split",
        lambda case, bad, world: ["embed", "--checkpoint", str(world.checkpoint), "--dataset", "digits", "--split", str(bad),
                                  "--threads", "1", "--out", str(case / "embed.npz")],
        lambda case: [case / "embed.npz"],
    ),
    "relabel --embeddings .npz": Consumer(
        "embeddings .npz", lambda case, bad, world: relabel(bad, case=case), RELABEL_OUTPUTS,
    ),
    "relabel --embeddings .npy": Consumer(
        "embeddings .npy", lambda case, bad, world: relabel(bad, "--labels", str(case / "labels.npy"), case=case),
        RELABEL_OUTPUTS, prepare=save_valid,
    ),
    "relabel --labels": Consumer(
        "labels .npy", lambda case, bad, world: relabel(case / "embeddings.npy", "--labels", str(bad), case=case),
        RELABEL_OUTPUTS, prepare=save_valid,
    ),
    "aggregate, a metrics.json": Consumer(
        "metrics.json", lambda case, bad, world: ["aggregate", "--runs-dir", str(case / "runs"), "--out-dir", str(case / "results")],
        lambda case: [case / "results"],
        place=lambda case: case / "runs" / CELL_DIR / "stage1" / "metrics.json",
        prepare=runs_tree,
    ),
    "aggregate, a relabel.json": Consumer(
        "relabel.json", lambda case, bad, world: ["aggregate", "--runs-dir", str(case / "runs"), "--out-dir", str(case / "results")],
        lambda case: [case / "results"],
        place=lambda case: case / "runs" / CELL_DIR / "round~1" / "relabel.json",
        prepare=runs_tree,
    ),
    "aggregate --grid": Consumer(
        "grid.csv",
        lambda case, bad, world: ["aggregate", "--runs-dir", str(case / "runs"), "--grid", str(bad), "--out-dir", str(case / "results")],
        lambda case: [case / "results"],
        prepare=runs_tree,
    ),
}
CASES = [(consumer, corruption) for consumer, use in CONSUMERS.items() for corruption in CORRUPTIONS if applies(KINDS[use.kind], corruption)]


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


@pytest.mark.parametrize("consumer, corruption", CASES, ids=[f"{consumer}: {corruption}" for consumer, corruption in CASES])
def test_a_bad_file_is_one_line_that_names_it_and_nothing_is_written(world, tmp_path, capsys, consumer, corruption):
    use = CONSUMERS[consumer]
    kind = KINDS[use.kind]
    use.prepare(tmp_path, world)
    bad = use.place(tmp_path) if use.place else tmp_path / f"bad{kind.suffix}"
    write_bad(kind, corruption, world, bad)
    before = files_under(tmp_path)
    capsys.readouterr()

    code = main(use.argv(tmp_path, bad, world))

    error = capsys.readouterr().err
    assert code == 2, error
    assert len(error.splitlines()) == 1 and "Traceback" not in error, error
    assert str(bad) in error, error
    assert not [path for path in use.outputs(tmp_path) if path.exists()]
    assert files_under(tmp_path) == before, "nothing written, not even a temporary file"


def test_every_command_that_reads_a_file_and_every_corruption_is_covered():
    commands = {use.argv(Path("case"), Path("bad"), World(Path("world")))[0] for use in CONSUMERS.values()}
    assert commands == set(SUBCOMMANDS)
    assert {corruption for _, corruption in CASES} == set(CORRUPTIONS)
    assert {CONSUMERS[consumer].kind for consumer, _ in CASES} == set(KINDS)


# ---------------------------------------------------------------- the two commands, identities, old files


def test_a_split_of_another_data_set_names_the_file_and_its_data_set(world, tmp_path, capsys):
    # As `hdl split --dataset fashion_mnist --labels 40 --seed 0` wrote it before cells were recorded as one key.
    split = tmp_path / "results/splits/dataset~fashion_mnist/labels~40/imbalance~1/seed~0.npz"
    split.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(split, labeled_idx=np.sort(rng.choice(60000, 40, replace=False)), unlabeled_idx=np.arange(2241, 50000),
             dataset=np.array("fashion_mnist"), num_classes=np.array(10), labels=np.array(40), imbalance=np.array(1.0), seed=np.array(0))
    assert main(["train", *STAGE1, "--split", str(split), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hdl train: error: --split {split}: made for dataset=fashion_mnist, labels=40, imbalance=1, seed=0")
    assert "differ in dataset" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_truncated_split_names_the_file(world, tmp_path, capsys):
    split = tmp_path / "corrupt.npz"
    split.write_bytes(world.split.read_bytes()[:200])
    assert main(["train", *STAGE1, "--split", str(split), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"hdl train: error: --split {split}: a torn or foreign .npy/.npz file")
    assert "make the split of this cell with `hdl split --dataset digits --labels 40 --imbalance 1 --seed 0" in error


def test_valid_files_pass_and_carry_their_cell_from_split_to_extra_labels(world):
    cell = Cell("digits", 40, 1.0, 0, 10, METHOD)
    split = read_split(world.split, cell=cell, num_train=1438)
    assert len(split.labeled_idx) == 40
    embeddings, recorded = read_embeddings(world.embed)
    assert recorded == cell and len(embeddings["embeddings"]) == len(split.labeled_idx) + len(split.unlabeled_idx)
    arrays, relabel_cell = read_relabel_output(world.relabel)
    assert relabel_cell == cell and np.array_equal(arrays["index"], embeddings["index"])
    index, label, weight = read_extra_labels(world.extra, cell, 1438, 10, split)
    assert len(index) > 0 and len(index) == len(label) == len(weight)
    assert read_checkpoint(world.checkpoint, keys=CHECKPOINT_KEYS, cell=cell)["step"] == 2
    assert read_metrics(world.metrics, {**FOLDER, "round": 0, "variant": "stage1"})["method"] == METHOD
    assert read_relabel_report(world.report, FOLDER)["cell"] == cell.known()


def test_extra_labels_without_a_cell_are_read_as_of_an_unknown_cell(world, tmp_path):
    old = tmp_path / "old_extra_labels.npz"
    save_npz(old, {key: value for key, value in npz_arrays(world.extra).items() if key != "cell"})
    split = read_split(world.split)
    index, _, _ = read_extra_labels(old, Cell("digits", 40, 1.0, 0, 10, METHOD), 1438, 10, split)
    assert np.array_equal(index, npz_arrays(world.extra)["index"])
    with pytest.raises(UserError, match=r"not among the split's unlabeled samples \[\d+"):
        read_extra_labels(old, Cell("digits", 40, 1.0, 0, 10, METHOD), 1438, 10, read_split(world.other_split))


RELABEL_OUTPUT_EDITS = {
    "wrong keys": lambda a: renamed(a, "level", "wave"),
    "wrong dtype": lambda a: changed(a, "rank", lambda v: v + 0.5),
    "out-of-range indices": lambda a: changed(a, "labels", at(0, 10)),
    "duplicate indices": lambda a: changed(a, "index", first_twice),
    "NaN": lambda a: changed(a, "agreement", at(0, np.nan)),
}


@pytest.mark.parametrize("corruption", ["empty", "truncated", "random bytes", *RELABEL_OUTPUT_EDITS])
def test_relabel_output_read_by_no_command_is_checked_too(world, tmp_path, corruption):
    bad = tmp_path / "relabel.npz"
    kind = Kind(".npz", lambda w: npz_arrays(w.relabel), save_npz, RELABEL_OUTPUT_EDITS)
    write_bad(kind, corruption, world, bad)
    with pytest.raises(UserError) as error:
        read_relabel_output(bad)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
