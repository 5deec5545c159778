"""A tiny smoke run of the benchmarks (the real ones run outside CI); they write to a temp file."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench(args, tmp_path):
    env = {**os.environ, "INSTSEG_BENCH_MD": str(tmp_path / "B.md")}
    p = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return (tmp_path / "B.md").read_text()


def test_accuracy_and_pipeline_benchmarks_smoke(tmp_path):
    md = _bench(["bench/accuracy.py", "accuracy", "--seeds", "20000-20001"], tmp_path)
    assert "<!-- bench:accuracy -->" in md and "| variants |" in md and "| grabcut |" in md
    md = _bench(["bench/pipeline.py", "toy", "--images", "1"], tmp_path)
    assert "end to end" in md and "ratio end-to-end / variants" in md
