"""tools/bench_train.py end to end on the smoke cube: every case runs the real trainer (1 rank,
2 ranks under torchrun, 1 rank x 2 threads) and the JSON carries the figures the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_train_writes_its_figures(physics_cube, tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text("""model: {task: emulator, architecture: transformer, mode: datacube,
        transformer: {dim: 16, depth: 1, heads: 2, patch: [8, 8]}}
train: {batch_size: 2, validation_fraction: 0.0}
""")
    done = subprocess.run([sys.executable, str(REPO / "tools" / "bench_train.py"), "--config", str(config),
                           "--cube", str(physics_cube), "--steps", "10", "--repeats", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(Path(done.stdout.strip().splitlines()[-1]).read_text())
    head = record["headline"]
    assert head["samples/s 1 rank x 1 thread"] > 0 and head["samples/s 2 ranks x 1 thread"] > 0
    assert 0 < head["scaling efficiency 2 ranks (target >= 0.8)"] < 2
    assert 0 <= head["largest data-wait share of step time (target < 0.1)"] < 1
    assert head["checkpoint write s (median, 1 rank)"] > 0
    two = record["runs"]["2 ranks x 1 thread"][0]
    assert two["ranks"] == 2 and len(two["timing_per_rank"]) == 2 and two["weights_identical_across_ranks"]
    assert two["steps"] == 10 and record["provenance"]["git"]
