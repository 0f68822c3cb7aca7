"""Atomic writes: a failure leaves the old file and no temporary file behind."""

from __future__ import annotations

import pytest

from astrohpc.atomic_write import atomic_path, write_json, write_text


def test_failed_write_keeps_previous_content(tmp_path):
    target = write_text(tmp_path / "out.txt", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_json_creates_parents(tmp_path):
    path = write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert path.read_text() == '{\n  "x": 1\n}\n'
