"""The worker writes the workflow modules' bytecode cache: the sandbox imports them afresh for every
run, and without a cache (PYTHONDONTWRITEBYTECODE) it would compile their source for every order."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
from pathlib import Path

import pytest
from temporalio import workflow

import worker


def test_a_worker_leaves_a_current_bytecode_cache_for_every_workflow_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = tmp_path / "workflows"
    shutil.copytree(worker.WORKFLOW_MODULES, modules, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(worker, "WORKFLOW_MODULES", modules)
    sources = sorted(modules.glob("*.py"))
    assert {p.name for p in sources} >= {"order.py", "fulfilment.py", "replenishment.py"}
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


def test_every_sandboxed_workflow_is_in_the_cached_modules() -> None:
    """The cache is written for workflows/ only: a workflow the sandbox runs must live there. The sandbox
    parties (sandbox/workflows.py) run unsandboxed, imported once like any module."""
    sandboxed = {}
    for cls in worker.WORKFLOWS:
        definition = workflow._Definition.must_from_class(cls)
        sandboxed[definition.name] = (definition.sandboxed, Path(inspect.getfile(cls)).parent)
    assert {name for name, (inside, _) in sandboxed.items() if not inside} == {
        "SandboxWarehouseWorkflow",
        "SandboxCarrierWorkflow",
    }
    for name, (inside, folder) in sandboxed.items():
        if inside:
            assert folder == worker.WORKFLOW_MODULES, f"{name} is defined outside {worker.WORKFLOW_MODULES}"
