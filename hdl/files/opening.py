"""Opening a file a command reads: the file as messages name it, and .npy/.npz/JSON read without trusting it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from hdl.errors import UserError


@dataclass(frozen=True)
class Source:
    """A file as messages name it (``--split PATH``), and what to do when it is bad."""

    path: Path
    flag: str | None
    remedy: str

    @classmethod
    def of(cls, path: str | Path, flag: str | None, remedy: str) -> Source:
        return cls(Path(path), flag, remedy)

    def __str__(self) -> str:
        return f"{self.flag} {self.path}" if self.flag else str(self.path)

    def error(self, problem: str) -> UserError:
        return UserError(f"{self}: {problem}; {self.remedy}")


def short_reason(error: BaseException, first_sentence: bool = False) -> str:
    """An exception as a short phrase on one line (library messages can span paragraphs)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if first_sentence:
        text = text.split(". ")[0]
    return text if len(text) <= 160 else text[:157] + "..."


def require_file(source: Source) -> None:
    if not source.path.exists():
        raise source.error("no such file")
    if not source.path.is_file():
        raise source.error("not a file")
    if source.path.stat().st_size == 0:
        raise source.error("the file is empty")


ZIP_MAGIC = b"PK\x03\x04"  # .npz files and torch checkpoints are zip archives
NPY_MAGIC = b"\x93NUMPY"
PICKLE_MAGIC = b"\x80"  # pickle protocol 2 and above


def what_it_is(path: Path) -> str:
    """What a file that is not of the expected format looks like, from its first bytes."""
    with open(path, "rb") as handle:
        start = handle.read(8)
    if start.startswith(PICKLE_MAGIC):
        return "a Python pickle, which hdl never loads"
    if start.startswith(ZIP_MAGIC):
        return "a zip archive"
    if start.startswith(NPY_MAGIC):
        return "a single .npy array"
    return f"of an unknown format (it starts with {start!r})"


def load_numpy(source: Source) -> np.ndarray | dict[str, np.ndarray]:
    """An .npy's array or an .npz's arrays, never unpickling anything."""
    require_file(source)
    with open(source.path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if not start.startswith((ZIP_MAGIC, NPY_MAGIC)):
        raise source.error(f"not an .npy or .npz file: {what_it_is(source.path)}")
    try:
        loaded = np.load(source.path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {key: loaded[key] for key in loaded.files}
        return loaded
    except Exception as error:  # numpy, zipfile and zlib raise many kinds on a torn or foreign file
        if "allow_pickle" in str(error):
            raise source.error("it holds pickled Python objects (dtype object), which hdl never loads") from None
        raise source.error(f"a torn or foreign .npy/.npz file ({short_reason(error)})") from None


def open_npz(source: Source, keys: Iterable[str]) -> dict[str, np.ndarray]:
    loaded = load_numpy(source)
    keys = list(keys)
    if not isinstance(loaded, dict):
        raise source.error(f"a single .npy array, not an .npz with {', '.join(keys)}")
    missing = [key for key in keys if key not in loaded]
    if missing:
        raise source.error(f"no {', '.join(missing)} array (it has {', '.join(loaded) or 'none'})")
    return loaded


class _RepeatedKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise _RepeatedKey(", ".join(repeated))
    return dict(pairs)


def open_json(source: Source) -> dict[str, Any]:
    require_file(source)
    try:
        record = json.loads(source.path.read_text(encoding="utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise source.error("not a UTF-8 text file, so not JSON") from None
    except _RepeatedKey as error:
        raise source.error(f"repeats the key(s) {error}, so one value would silently win") from None
    except (OSError, ValueError) as error:
        raise source.error(f"not valid JSON ({short_reason(error)})") from None
    if not isinstance(record, dict):
        raise source.error(f"holds a JSON {type(record).__name__}, not an object")
    return record
