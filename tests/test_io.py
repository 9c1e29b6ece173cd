"""Atomic writes: finished files appear whole, failed writes leave nothing behind."""

import json
import os

import numpy as np
import pytest

from hdl.io import atomic_path, save_npz, write_json


def test_write_json_and_npz_land_complete_with_the_usual_permissions(tmp_path):
    write_json(tmp_path / "sub" / "a.json", {"x": np.float32(0.5), "y": np.arange(3)})
    assert json.loads((tmp_path / "sub" / "a.json").read_text()) == {"x": 0.5, "y": [0, 1, 2]}
    save_npz(tmp_path / "b.npz", values=np.arange(4))
    with np.load(tmp_path / "b.npz") as data:
        assert data["values"].tolist() == [0, 1, 2, 3]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "b.npz").stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npz", "sub"]


def test_a_failed_write_leaves_neither_target_nor_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
