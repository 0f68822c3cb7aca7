"""One training step of a tiny datacube U-Net: does the image's stack (torch, autograd, AdamW) work?

Run by the Apptainer image's %test (after `astrohpc doctor`) and by tests/launch/test_apptainer.py:

    python tools/container_selftest.py [--device cpu|cuda]

The data are random on purpose: this checks that the installed software computes a finite loss,
back-propagates and updates every weight, not that anything is learned. It needs no datacube and
takes a few seconds on one CPU core. Exit status 0 on success, 1 with one line saying what failed.
"""

from __future__ import annotations

import argparse
import math
import sys
import time


def selftest_step(device: str) -> str:
    """One forward + backward + AdamW step; returns a one-line summary, raises AssertionError on a failure."""
    import torch

    from astrohpc.models.unet import DatacubeUNet

    torch.manual_seed(0)
    # [B, V, Tc, Tg, L, lat, lon]: 2 samples, 3 variables, one time step each, 2 levels, an 8 x 16 grid
    model = DatacubeUNet(in_vars=3, out_vars=2, levels=2, width=4, depth=1, params_dim=2, norm="group").to(device)
    x = torch.randn(2, 3, 1, 1, 2, 8, 16, device=device)
    params = torch.randn(2, 2, device=device)
    target = torch.randn(2, 2, 1, 1, 2, 8, 16, device=device)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    loss = torch.nn.functional.mse_loss(model(x, params), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert math.isfinite(loss.item()), f"loss is {loss.item()}"
    frozen = sum(torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))
    assert frozen == 0, f"{frozen} of {len(before)} parameter tensors did not change after one AdamW step"
    return f"torch {torch.__version__} on {device}: loss {loss.item():.4f}, {len(before)} parameter tensors updated"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu; cuda with apptainer --nv)")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        summary = selftest_step(args.device)
    except AssertionError as exc:
        print(f"container selftest FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"container selftest ok: {summary} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
