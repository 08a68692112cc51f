"""The worker writes the workflow modules' bytecode cache: the sandbox imports them afresh for every
run, and without a cache (PYTHONDONTWRITEBYTECODE) it would compile their source for every order."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

import worker


def test_a_worker_leaves_a_current_bytecode_cache_for_every_workflow_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "workflows"
    shutil.copytree(worker.WORKFLOW_MODULES, modules, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(worker, "WORKFLOW_MODULES", modules)
    sources = sorted(modules.glob("*.py"))
    assert {p.name for p in sources} >= {"order.py", "sandbox_parties.py"}
    assert not (modules / "__pycache__").exists()

    worker.workflow_runner()

    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        assert cached.is_file(), f"no bytecode cache for {source.name}"
        # what the import system checks before it uses the cache: the source's mtime and size
        header = cached.read_bytes()[8:16]
        stat = source.stat()
        assert int.from_bytes(header[:4], "little") == int(stat.st_mtime) & 0xFFFFFFFF
        assert int.from_bytes(header[4:], "little") == stat.st_size & 0xFFFFFFFF
