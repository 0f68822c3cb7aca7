"""Paths shared by the GCM tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOKE_CONFIG = REPO / "configs" / "gcm" / "smoke.yaml"
DEMO_CONFIG = REPO / "configs" / "gcm" / "demo.yaml"
