"""Benchmarks leave nothing behind: bench_tls.py's private keys are removed, however it ends."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_bench_tls(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))  # the benchmark puts its directory first
    spec = importlib.util.spec_from_file_location("bench_tls_under_test", ROOT / "benchmarks" / "bench_tls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("fails", [False, True])
def test_bench_tls_removes_its_credentials(tmp_path, monkeypatch, capsys, fails):
    """``bench_tls.py --quick`` used to leave a directory holding four private keys in /tmp.
    The player processes are replaced by a stub: what is checked is the directory's lifetime."""
    bench = _load_bench_tls(monkeypatch)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def run_worker(python, script, spec):
        directory = Path(spec["directory"])
        seen.append(sorted(path.name for path in directory.iterdir()))
        if fails:
            raise RuntimeError("a worker failed")
        return [1.0]

    monkeypatch.setattr(bench, "run_worker", run_worker)
    monkeypatch.setattr(sys, "argv", ["bench_tls.py", "--quick"])
    if fails:
        with pytest.raises(RuntimeError, match="a worker failed"):
            bench.main()
    else:
        bench.main()
        assert "| workload" in capsys.readouterr().out
    assert seen and all(f"player-{rank}.pem" in names for names in seen for rank in range(4))
    assert list(tmp_path.iterdir()) == []
