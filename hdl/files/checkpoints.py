"""The reader of `hdl train`'s checkpoint.pt, loaded with ``weights_only=True``."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

from hdl.cell import Cell, typed_field
from hdl.files.checks import check_cell, preview
from hdl.files.opening import ZIP_MAGIC, Source, require_file, short_reason, what_it_is


#: what `hdl train` saves in a checkpoint: what resuming and continuing (--init) read back
CHECKPOINT_KEYS = (
    "config", "step", "schedule", "last_lr", "model", "ema_model", "optimizer", "algorithm", "rng",
    "history", "last_eval", "seconds", "sizes", "tracker_id",
)
#: what `hdl embed` reads from a checkpoint
EMBED_CHECKPOINT_KEYS = ("config", "ema_model")
#: config fields a checkpoint must have, and their types
CHECKPOINT_CONFIG = {"dataset": str, "labels": int, "imbalance": float, "seed": int, "method": str, "arch": str}
CHECKPOINT_REMEDY = "pass a checkpoint.pt written by `hdl train`"


def read_checkpoint(
    path: str | Path,
    flag: str | None = "--checkpoint",
    keys: Iterable[str] = EMBED_CHECKPOINT_KEYS,
    remedy: str = CHECKPOINT_REMEDY,
    cell: Cell | None = None,
) -> dict[str, Any]:
    """A checkpoint of `hdl train` with ``keys``, its config typed and its weights finite, loaded with
    ``weights_only=True`` (tensors, numbers, strings and containers only); with ``cell``, refused if
    trained on another cell or with another method."""
    import torch

    source = Source.of(path, flag, remedy)
    require_file(source)
    with open(source.path, "rb") as handle:
        if not handle.read(len(ZIP_MAGIC)) == ZIP_MAGIC:
            raise source.error(f"cannot read checkpoint: torch saves zip archives, and this file is {what_it_is(source.path)}")
    try:
        with warnings.catch_warnings():  # torch warns about what it then refuses anyway; the error says enough
            warnings.simplefilter("ignore")
            state = torch.load(source.path, map_location="cpu", weights_only=True)
    except Exception as error:  # torn, or pickling other objects than tensors: torch raises many kinds
        unsupported = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        reason = f"it pickles {unsupported.group(1)}, which hdl never loads" if unsupported else short_reason(error, True)
        raise source.error(f"cannot read checkpoint ({reason})") from None
    if not isinstance(state, dict):
        raise source.error(f"holds a {type(state).__name__}, not the dict `hdl train` saves")
    missing = [key for key in keys if key not in state]
    if missing:
        raise source.error(f"no {', '.join(missing)} in it: not a checkpoint of this version of `hdl train`")
    config = state["config"]
    if not isinstance(config, dict) or not isinstance(config.get("train"), dict):
        raise source.error("its config is not a dict with a train dict")
    for name, kind in CHECKPOINT_CONFIG.items():
        try:
            typed_field(name, kind, config.get(name))
        except ValueError as error:
            raise source.error(f"config {error}") from None
    for name in ("model", "ema_model"):
        if name not in state:
            continue
        weights = state[name]
        if not isinstance(weights, dict) or not all(torch.is_tensor(value) for value in weights.values()):
            raise source.error(f"{name} is not a state dict of tensors")
        broken = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:
            raise source.error(f"{name} has NaN or infinite weights in {len(broken)} tensors {preview(broken)}")
    check_cell(source, checkpoint_cell(state), cell)
    return state


def checkpoint_cell(state: Mapping[str, Any]) -> Cell:
    """The cell (and method) a checkpoint from :func:`read_checkpoint` was trained on."""
    return Cell.of(state["config"])

