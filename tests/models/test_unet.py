"""The datacube U-Net: shapes over time, level and variable configurations, longitude-roll
equivariance, FiLM, SyncBatchNorm, checkpointing, MC dropout, cost, and training steps on a real
batch of the ExoPlaSim cube (loss goes down; no accuracy claim)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from astrohpc.data.cube import read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.models.blocks import FiLM
from astrohpc.models.cost import count_flops, count_parameters
from astrohpc.models.layout import DatacubeLayout
from astrohpc.models.uncertainty import dropout_active
from astrohpc.models.unet import ChannelUNet, DatacubeUNet

GRID = (16, 32)  # random-tensor tests; the real cube is 32 x 64


def small(**kwargs) -> DatacubeUNet:
    options = dict(in_vars=4, out_vars=3, levels=5, width=8, depth=2)
    options.update(kwargs)
    return DatacubeUNet(**options)


def cube(model: DatacubeUNet, batch: int = 2, grid=GRID) -> torch.Tensor:
    return torch.randn(batch, model.in_vars, *model.in_time, model.levels, *grid)


@pytest.mark.parametrize("options", [
    dict(),  # one state in, one state out
    dict(in_climate_time=3, out_climate_time=2),  # a window in, two steps out
    dict(in_geo_time=4, out_geo_time=4),  # geo time only (e.g. diurnal phases)
    dict(in_climate_time=2, in_geo_time=3, out_climate_time=1, out_geo_time=2, attention=True),
    dict(in_vars=5, out_vars=5, levels=1),  # 2-D variables only: one level
    dict(levels=10, level_downsample=True, params_dim=3),  # levels padded 10 -> 12, halved twice
    dict(depth=3, norm="group", dropout=0.1, nlat=16, params_dim=2, attention=True, checkpoint=True),
    dict(depth=1, norm="none", kernel=5, time_kernel=5, in_climate_time=2),
])
def test_output_shapes(options):
    torch.manual_seed(0)
    model = small(**options)
    x = cube(model)
    params = torch.randn(2, model.params_dim) if model.params_dim else None
    out = model(x, params)
    assert out.shape == (2, model.out_vars, *model.out_time, model.levels, *GRID)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert torch.isfinite(out).all()


def test_inputs_that_do_not_fit_are_refused_with_the_fix():
    model = small(params_dim=2, nlat=16)
    with pytest.raises(ValueError, match="use depth <= 1"):
        model(torch.randn(1, 4, 1, 1, 5, 16, 20), torch.randn(1, 2))  # 20 lon: 20/8 is no integer
    with pytest.raises(ValueError, match="V=4"):
        model(torch.randn(1, 3, 1, 1, 5, *GRID), torch.randn(1, 2))
    with pytest.raises(ValueError, match="pass params"):
        model(cube(model, 1))
    with pytest.raises(ValueError, match="built for 16 latitudes"):
        model(torch.randn(1, 4, 1, 1, 5, 8, 32), torch.randn(1, 2))
    with pytest.raises(ValueError, match="expected one of"):
        small(norm="layer")
    with pytest.raises(ValueError, match=">= 1"):
        small(out_climate_time=0)


@pytest.mark.parametrize("options", [dict(params_dim=3), dict(params_dim=3, attention=True, nlat=16),
                                     dict(params_dim=3, level_downsample=True, in_climate_time=2)])
def test_rolling_longitude_by_whole_coarse_cells_rolls_the_output(options):
    """Circular padding, across-pole padding (a half-turn roll), pooling by 2^depth, per-channel
    norms and FiLM, and position-free attention all commute with an eastward roll of k·2^depth cells."""
    torch.manual_seed(0)
    model = small(**options)
    model.train()
    model(cube(model, 4), torch.randn(4, 3))  # non-trivial BatchNorm running statistics
    model.eval()
    x, params = cube(model), torch.randn(2, 3)
    out = model(x, params)
    for k in (1, 3):
        shift = k * 2 ** model.depth
        torch.testing.assert_close(model(x.roll(shift, dims=-1), params), out.roll(shift, dims=-1),
                                   rtol=1e-4, atol=1e-5)
    # the output does depend on longitude: rolling the input alone changes it
    assert not torch.allclose(model(x.roll(2 ** model.depth, dims=-1), params), out, atol=1e-3)


def test_film_conditions_on_the_planet_parameters():
    torch.manual_seed(0)
    model = small(params_dim=3).eval()
    x = cube(model)
    p = torch.randn(2, 3)
    base = model(x, p)
    assert (model(x, p + 1.0) - base).abs().max() > 1e-3
    changed = p.clone()
    changed[1] += 1.0  # only the second sample's planet changes
    out = model(x, changed)
    torch.testing.assert_close(out[0], base[0])  # eval mode: samples do not interact
    assert (out[1] - base[1]).abs().max() > 1e-3
    unconditioned = small(params_dim=0)
    assert not any(isinstance(m, FiLM) for m in unconditioned.modules()) and unconditioned.params_mlp is None
    assert sum(isinstance(m, FiLM) for m in model.modules()) == 2 * model.depth + 2  # one per residual block
    assert unconditioned(cube(unconditioned)).shape == (2, 3, 1, 1, 5, *GRID)


def test_batchnorms_convert_to_sync_batchnorm():
    torch.manual_seed(0)
    model = small(attention=True)
    n_bn = sum(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert n_bn == 2 * (2 * model.depth + 2)  # two per residual block
    model.train()
    model(cube(model, 4))
    model.eval()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == n_bn
    assert not any(type(m) is nn.BatchNorm1d for m in synced.modules())
    x = cube(model)
    torch.testing.assert_close(synced(x), model(x))  # running statistics carried over
    synced.train()
    model.train()
    torch.testing.assert_close(synced(x), model(x))  # no process group: plain batch statistics


def test_checkpointing_gives_the_same_outputs_gradients_and_statistics():
    torch.manual_seed(0)
    plain = small(params_dim=2, attention=True, dropout=0.2, in_climate_time=2)
    ckpt = copy.deepcopy(plain)
    ckpt.checkpoint = True
    x, p = cube(plain), torch.randn(2, 2)
    results = []
    for model in (plain, ckpt):
        model.train()
        torch.manual_seed(1)  # the same dropout masks; checkpointing replays them in the backward pass
        out = model(x, p)
        out.square().mean().backward()
        results.append((out, {n: q.grad for n, q in model.named_parameters()}, model.state_dict()))
    (out_a, grads_a, state_a), (out_b, grads_b, state_b) = results
    torch.testing.assert_close(out_b, out_a)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-6, msg=name)
    # the recomputation did not update BatchNorm's running statistics a second time
    for name in state_a:
        torch.testing.assert_close(state_b[name], state_a[name], msg=name)
    assert any(k.endswith("num_batches_tracked") and v.item() == 1 for k, v in state_b.items())


def test_mc_dropout_varies_the_output_and_leaves_batchnorm_alone():
    torch.manual_seed(0)
    model = small(dropout=0.3)
    model.train()
    model(cube(model, 4))
    before = copy.deepcopy(model.state_dict())
    x = cube(model)
    with dropout_active(model):
        a, b = model(x), model(x)
    assert (a - b).abs().max() > 1e-4
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_cost_counts_parameters_and_flops():
    torch.manual_seed(0)
    narrow, wide = small(width=8), small(width=16)
    assert count_parameters(narrow) == sum(p.numel() for p in narrow.parameters()) > 0
    narrow.level_embedding.requires_grad_(False)
    assert count_parameters(narrow, trainable_only=True) == count_parameters(narrow) - narrow.level_embedding.numel()
    x = cube(narrow, 1)
    f_narrow, f_wide = count_flops(narrow.eval(), x), count_flops(wide.eval(), x)
    assert 0 < f_narrow < f_wide
    assert count_flops(narrow, cube(narrow, 2)) == 2 * f_narrow  # a batch of two costs twice one
    # attention is counted in eval mode too (torch's fused inference path would hide it)
    attn = small(width=8, attention=True).eval()
    assert count_flops(attn, x) > f_narrow


def test_channel_unet_is_a_stepper_net():
    """z [B, C_in, lat, lon] with input-only channels (a forcing at t+1, a static field) -> Δ [B, C_out, lat, lon]."""
    nan = math.nan
    out_layout = DatacubeLayout.from_channels(["ts", "ta", "ta", "ta"], [nan, 0.2, 0.5, 0.8])
    in_layout = DatacubeLayout.from_channels(["ts", "ta", "ta", "ta", "rsdt", "rsdt@next", "sg"],
                                             [nan, 0.2, 0.5, 0.8, nan, nan, nan])
    torch.manual_seed(0)
    net = ChannelUNet(in_layout, out_layout, width=8, depth=2, params_dim=2)
    z, p = torch.randn(2, 7, *GRID), torch.randn(2, 2)
    assert net(z, p).shape == (2, 4, *GRID)
    window = ChannelUNet(in_layout, out_layout, width=8, depth=2, in_climate_time=3, out_climate_time=2)
    assert window(torch.randn(2, 3, 7, *GRID)).shape == (2, 2, 4, *GRID)
    with pytest.raises(ValueError, match="levels"):
        ChannelUNet(in_layout, DatacubeLayout.from_channels(["ts"], [nan]))


def test_a_few_steps_on_a_real_batch_reduce_the_loss(physics_cube):
    """One day ahead on the real cube (normalised, all 75 channels as 21 variables × 10 σ levels,
    static fields as extra inputs): Adam steps reduce the MSE on the real channels."""
    ds = WindowDataset(physics_cube, 1, 1, normalize=True, static=True)
    layout = DatacubeLayout.from_meta(read_meta(physics_cube))
    items = [ds[i] for i in (0, 2, 4, 6)]  # windows from both runs
    x = layout.to_cube(torch.stack([it["input"] for it in items]))  # [4, 21, 1, 1, 10, 32, 64]
    static = torch.stack([it["static"] for it in items])  # [4, 2, 32, 64]: sg, lsm
    static = static[:, :, None, None, None].expand(-1, -1, 1, 1, layout.n_levels, -1, -1)
    target = torch.stack([it["target"] for it in items])[:, 0]  # [4, 75, 32, 64]
    params = torch.stack([it["params"] for it in items])
    torch.manual_seed(0)
    model = DatacubeUNet(layout.n_variables + 2, layout.n_variables, layout.n_levels, width=8, depth=2,
                         params_dim=params.shape[1], nlat=32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs = torch.cat([x, static], dim=1)

    def loss() -> torch.Tensor:
        return (layout.from_cube(model(inputs, params), time_axes=0) - target).square().mean()

    model.train()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    with torch.no_grad():
        final = loss().item()
    assert all(math.isfinite(v) for v in losses)
    assert final < 0.8 * losses[0], losses + [final]
