"""The surrogate transformer: patch tokens, every output mode, parameters-only use, fusion that
responds to the planet, gradients to every head, and training on a real batch of the ExoPlaSim cube."""

from __future__ import annotations

import shutil

import pytest
import torch

from astrohpc.data.dataset import WindowDataset
from astrohpc.data.schema import stats_path
from astrohpc.data.spectra import read_spectra, write_spectra
from astrohpc.models.patches import PatchEmbed, PatchUnembed
from astrohpc.models.transformer import MODES, SurrogateTransformer, multitask_loss
from astrohpc.physics.grid import SphereGrid, global_mean

C, P, GRID = 6, 3, (16, 32)  # small random-tensor models; the real cube is 75 channels on 32 x 64
SCALARS = ["ts", "rsdt", "rst", "rlut", "ntr"]


def small(**kwargs) -> SurrogateTransformer:
    options = dict(in_channels=C, params_dim=P, grid=GRID, patch=(4, 4), dim=32, depth=2, heads=4,
                   out_channels=C, n_scalars=5, n_bins=8)
    options.update(kwargs)
    return SurrogateTransformer(**options)


# --- patches --------------------------------------------------------------------------------------------

def test_patch_tokens_are_longitude_circular():
    """Rolling the globe east by one patch rolls the tokens by one: the patches at 0° and 360° are
    neighbours (with zero padding at the date line the edge tokens would differ)."""
    torch.manual_seed(0)
    embed = PatchEmbed(C, 32, GRID, (4, 4), halo=1)
    assert embed.n_tokens == 4 * 8
    x = torch.randn(2, C, *GRID)
    tokens = embed.tokens(x).reshape(2, 4, 8, 32)
    rolled = embed.tokens(x.roll(4, dims=-1)).reshape(2, 4, 8, 32)
    torch.testing.assert_close(rolled, tokens.roll(1, dims=2), rtol=1e-5, atol=1e-5)
    assert embed(x).shape == (2, 32, 32)
    with pytest.raises(ValueError, match="tile the grid"):
        PatchEmbed(C, 32, (30, 64), (4, 4))
    with pytest.raises(ValueError, match="differs from the model"):
        embed(torch.randn(2, C, 32, 64))


def test_patch_unembedding_puts_a_token_on_its_patch_and_wraps_the_seams():
    torch.manual_seed(0)
    unembed = PatchUnembed(32, C, GRID, (4, 4))
    zeros = torch.zeros(1, 32, 32)
    one = zeros.clone()
    one[0, 2 * 8 + 0] = torch.randn(32)  # patch row 2 (lat 8..11), column 0 (lon 0..3)
    diff = (unembed(one) - unembed(zeros)).abs().sum(dim=(0, 1))  # [lat, lon]
    assert unembed(one).shape == (1, C, *GRID)
    assert diff[8:12, 0:4].min() > 0
    assert diff[8:12, 31].max() > 0  # the seam convolution reaches across the date line
    touched = torch.zeros_like(diff, dtype=torch.bool)
    touched[7:13, 0:5] = True
    touched[7:13, 31] = True
    assert diff[~touched].max() == 0


# --- shapes and configurations --------------------------------------------------------------------------

EXPECTED = {"datacube": (2, C, *GRID), "scalar": (2, 5), "spectral": (2, 8)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("steps", [0, 1, 3])  # 0: parameters only
def test_every_mode_has_its_shape(mode, steps):
    torch.manual_seed(0)
    model = small(mode=mode, in_channels=steps * C)
    params = torch.randn(2, P)
    state = None if steps == 0 else torch.randn(2, steps, C, *GRID)  # steps stacked into channels
    out = model(state, params)
    if mode == "joint":
        assert {k: tuple(v.shape) for k, v in out.items()} == EXPECTED
    else:
        assert tuple(out.shape) == EXPECTED[mode]
    if steps:
        torch.testing.assert_close(model(state.flatten(1, 2), params), out)  # [B, steps·C, lat, lon] alike


def test_other_input_combinations():
    torch.manual_seed(0)
    state = torch.randn(2, C, *GRID)
    assert small(params_dim=0)(state).shape == (2, C, *GRID)  # a state alone: no fusion, a plain ViT
    with_spectrum = small(in_bins=8, mode="joint")  # an input spectrum as a third modality
    out = with_spectrum(state, torch.randn(2, P), torch.randn(2, 8))
    assert out["spectral"].shape == (2, 8)
    spectrum_only = small(in_channels=0, params_dim=0, in_bins=8, mode="scalar")
    assert spectrum_only(spectrum=torch.randn(2, 8)).shape == (2, 5)


def test_misuse_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="expected one of datacube, scalar, spectral, joint"):
        small(mode="fields")
    with pytest.raises(ValueError, match="cross, concat"):
        small(fusion="add")
    with pytest.raises(ValueError, match="needs out_channels and n_scalars >= 1"):
        small(mode="joint", out_channels=0, n_scalars=0)
    with pytest.raises(ValueError, match="needs an input"):
        small(in_channels=0, params_dim=0)
    with pytest.raises(ValueError, match="multiple of heads"):
        small(dim=30)
    with pytest.raises(ValueError, match="learned_task_weights"):
        small(mode="scalar", learned_task_weights=True)
    model = small()
    with pytest.raises(ValueError, match="pass `state`"):
        model(None, torch.randn(2, P))
    with pytest.raises(ValueError, match="in_channels=6"):
        model(torch.randn(2, C + 1, *GRID), torch.randn(2, P))
    with pytest.raises(ValueError, match="takes no `state`"):
        small(in_channels=0)(torch.randn(2, C, *GRID), torch.randn(2, P))
    with pytest.raises(ValueError, match="batch size"):
        model(torch.randn(2, C, *GRID), torch.randn(3, P))


# --- the planet reaches the output ----------------------------------------------------------------------

@pytest.mark.parametrize("fusion", ["cross", "concat"])
@pytest.mark.parametrize("steps", [0, 1])
def test_output_follows_the_planet_parameters(fusion, steps):
    """Changing one parameter changes every head's output, with or without a state."""
    torch.manual_seed(0)
    model = small(mode="joint", fusion=fusion, in_channels=steps * C).eval()
    state = None if steps == 0 else torch.randn(1, C, *GRID).expand(2, -1, -1, -1)
    params = torch.zeros(2, P)
    params[1, 1] = 1.0  # the second planet differs in one parameter
    out = model(state, params)
    for head, value in out.items():
        assert (value[0] - value[1]).abs().max() > 1e-4, head
    if steps:  # and the state matters too
        other = model(torch.randn(2, C, *GRID), params)
        assert (other["datacube"] - out["datacube"]).abs().max() > 1e-3


def test_parameters_only_datacube_differs_between_patches():
    """The learned queries are per patch: the predicted field is not one value repeated."""
    torch.manual_seed(0)
    field = small(in_channels=0, mode="datacube").eval()(None, torch.randn(1, P))
    assert field.std() > 1e-3


# --- gradients and the multitask loss -------------------------------------------------------------------

@pytest.mark.parametrize("steps", [0, 2])
def test_joint_gradients_reach_every_head_and_parameter(steps):
    torch.manual_seed(0)
    model = small(mode="joint", in_channels=steps * C, in_bins=8, learned_task_weights=True)
    state = None if steps == 0 else torch.randn(2, steps * C, *GRID)
    out = model(state, torch.randn(2, P), torch.randn(2, 8))
    target = {k: torch.randn_like(v) for k, v in out.items()}
    total, parts = multitask_loss(out, target, {"datacube": 1.0, "scalar": 0.5, "spectral": 2.0},
                                  model.task_log_vars)
    assert set(parts) == {"datacube", "scalar", "spectral"}
    total.backward()
    for head in ("datacube", "scalar", "spectral"):
        grads = [p.grad for p in model.head_modules[head].parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads), head
        assert model.task_log_vars[head].grad.abs() > 0
    silent = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert silent == []


def test_multitask_loss_fixed_and_learned_weights():
    torch.manual_seed(0)
    pred = {"datacube": torch.randn(2, 3, 4, 4), "scalar": torch.randn(2, 5)}
    target = {k: torch.randn_like(v) for k, v in pred.items()}
    mse = {k: ((pred[k] - target[k]) ** 2).mean() for k in pred}
    total, parts = multitask_loss(pred, target, {"datacube": 2.0, "scalar": 0.5})
    torch.testing.assert_close(total, 2.0 * mse["datacube"] + 0.5 * mse["scalar"])
    torch.testing.assert_close(parts["scalar"], mse["scalar"])
    total, _ = multitask_loss(pred, target, {"scalar": 0.0})  # weight 0: the head is left out
    torch.testing.assert_close(total, mse["datacube"])
    s = {"datacube": torch.tensor(0.7), "scalar": torch.tensor(-0.3)}
    total, _ = multitask_loss(pred, target, None, s)  # Kendall et al.: ½ e^{-s} L + ½ s
    expected = sum(0.5 * torch.exp(-s[k]) * mse[k] + 0.5 * s[k] for k in pred)
    torch.testing.assert_close(total, expected)
    # NaN in a target (a value the cube does not have) is left out of the mean
    holed = target["scalar"].clone()
    holed[0, 0] = float("nan")
    _, parts = multitask_loss({"scalar": pred["scalar"]}, {"scalar": holed})
    torch.testing.assert_close(parts["scalar"], ((pred["scalar"] - target["scalar"]) ** 2).flatten()[1:].mean())
    with pytest.raises(ValueError, match="no target for head"):
        multitask_loss(pred, {"scalar": target["scalar"]})
    with pytest.raises(ValueError, match="does not have: spectral"):
        multitask_loss(pred, target, {"spectral": 1.0})


# --- training on the real cube ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_batch(physics_cube, tmp_path_factory):
    """All 8 windows (2 runs x 4) of the real cube, normalised, with three targets: the next step,
    global means of five fields (of the normalised next step), and the stored emission spectrum."""
    folder = tmp_path_factory.mktemp("transformer")
    cube = folder / "cube.h5"
    shutil.copy(physics_cube, cube)
    shutil.copy(stats_path(physics_cube), stats_path(cube))
    write_spectra(cube, n_bins=16)
    spectra = torch.as_tensor(read_spectra(cube).values, dtype=torch.float32)  # [run, time, bin]
    ds = WindowDataset(cube, 1, 1, normalize=True)
    items = [ds[i] for i in range(len(ds))]
    ds.close()
    grid = SphereGrid.from_meta(ds.meta)
    state = torch.stack([it["input"] for it in items])  # [8, 1, 75, 32, 64]
    target = torch.stack([it["target"][0] for it in items])
    spectrum = torch.stack([spectra[it["run"], it["t0"] + 1] for it in items])
    picks = [ds.meta.channel(v) for v in SCALARS]
    return {"state": state, "params": torch.stack([it["params"] for it in items]),
            "target": {"datacube": target, "scalar": global_mean(target[:, picks], grid),
                       "spectral": (spectrum - spectrum.mean()) / spectrum.std()}}


@pytest.fixture
def one_thread():
    """Training steps on one intra-op thread: on a shared 2-core machine two OpenMP threads that
    wait on each other under load made each step ~30x slower (0.1 s -> 3 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("fusion", ["cross", "concat"])
@pytest.mark.parametrize("with_state", [True, False])
def test_both_fusions_train_on_a_real_batch(real_batch, fusion, with_state, one_thread):
    """Joint mode, every head: the multitask loss falls over a few Adam steps (parameters only too:
    the climate-surrogate configuration)."""
    torch.manual_seed(0)
    state = real_batch["state"] if with_state else None
    channels = real_batch["target"]["datacube"].shape[1]
    model = SurrogateTransformer(channels if with_state else 0, real_batch["params"].shape[1], grid=(32, 64),
                                 mode="joint", out_channels=channels, n_scalars=len(SCALARS), n_bins=16,
                                 fusion=fusion)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = []
    for _ in range(15):
        optimizer.zero_grad()
        loss, parts = multitask_loss(model(state, real_batch["params"]), real_batch["target"])
        loss.backward()
        optimizer.step()
        history.append({"total": loss.item(), **{k: v.item() for k, v in parts.items()}})
    assert history[-1]["total"] < 0.5 * history[0]["total"], history
    for head in ("datacube", "scalar", "spectral"):  # every head learns, not just the easiest one
        assert history[-1][head] < history[0][head], (head, history)
