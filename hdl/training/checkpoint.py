"""Checkpoints and what they hold besides the weights: every RNG's state, the run's config, its summary.

A checkpoint is written atomically (temp file, then rename) and loads with
``weights_only=True``: tensors, numbers, strings, lists and dicts only.  From
it a killed run resumes exactly (on CPU, bit for bit), and metrics.json is
its summary.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hdl.files import CHECKPOINT_KEYS, read_checkpoint
from hdl.io import atomic_path

CHECKPOINT_FORMAT = 1


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint the trainer resumes or continues from, checked by ``hdl.files.read_checkpoint``."""
    return read_checkpoint(path, None, CHECKPOINT_KEYS, "delete it to start the run afresh")


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def config_differences(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    """The keys (dotted) in which a checkpoint's config and the wanted one differ, with both values."""
    keys = sorted(saved.keys() | wanted.keys())
    differences = []
    for key in keys:
        old, new = saved.get(key), wanted.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            differences += config_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            differences.append(f"{prefix}{key} ({old!r} in the checkpoint, {new!r} now)")
    return differences


def summarise(state: dict) -> dict[str, Any]:
    """metrics.json's content, from a finished run's checkpoint state."""
    config, history, final = state["config"], state["history"], state["last_eval"]
    top1s = [row["top1"] for row in history]
    return {
        "top1": final["top1"],
        "balanced_acc": final["balanced_acc"],
        "per_class": final["per_class"],
        "best_top1": max(top1s),
        "median_last20_top1": statistics.median(top1s[-20:]),
        "steps": state["step"],
        "seconds": state["seconds"],
        **{key: config[key] for key in ("method", "arch", "dataset", "labels", "imbalance", "seed")},
        **state["sizes"],
        "config": config,
        "history": history,
        "probes": state["probes"],
        "refreshes": state["refresh"]["records"] if state.get("refresh") else [],
    }


# ---------------------------------------------------------------- RNG states


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    """Every global RNG's state, as tensors and plain numbers (loadable with ``weights_only=True``)."""
    _, python_state, python_gauss = random.getstate()
    _, numpy_keys, numpy_position, numpy_has_gauss, numpy_gauss = np.random.get_state()
    return {
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": python_gauss,
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_position": int(numpy_position),
        "numpy_gauss": [int(numpy_has_gauss), float(numpy_gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate((3, tuple(states["python"].tolist()), states["python_gauss"]))
    has_gauss, gauss = states["numpy_gauss"]
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), states["numpy_position"], has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
