"""Ablation: what each component of the surrogate is worth, measured as the change in held-out
error when it is removed, over several seeds, paired by seed.

The study config is a training config (`model:` and `train:` sections) plus `study.components`
and `study.seeds`. Every seed trains the full model and one variant per component; a variant is
the config with a few overrides (`a.b=value`, applied like the CLI's). The components a config
can ablate (`components(cfg)`), each only where the base config has the thing to remove:

    no_<term>_loss            a physics loss term with weight > 0: its weight set to 0
    no_<corrector>_corrector  a hard corrector the base applies: the corrector list without it
    no_correctors             every corrector off (only with two or more; with one it is the above)
    no_attention              U-Net with attention: attention off
    attention                 U-Net without attention: attention ON — the reverse ablation, so its
                              differences read "adding attention" (negative = attention helps)
    single_scale              U-Net with depth > 1: depth 1 (no downsampling, a single scale)
    concat_fusion             transformer with cross-attention fusion of the parameters: concatenation
    no_uncertainty            climate transformer with a Gaussian head (uncertainty.method: gaussian):
                              method none, a plain mean prediction (mc_dropout and ensemble change
                              nothing in how one member is trained, so they are not a component)

(`dry_mass` is both a loss term and a corrector, hence the suffixes.)

A task ({"variant", "seed", "overrides", "cube"}) trains with run.seed = seed into
STUDY/tasks/<id>/train/<variant>-seed<seed> (resuming its own checkpoint when rerun after a
preemption), then scores the exported best weights: on the validation runs the metrics of the
best epoch (the table the trainer wrote with those weights), on the test runs — when the split
has them — the same scores computed here with the same code (astrohpc.train.validate). Metrics,
each an error (lower is better):

    rmse_ratio_mean   mean over channels of RMSE / baseline RMSE (emulator: persistence at one
                      step; climate: the training climatology); < 1 beats the baseline. Channels
                      whose baseline RMSE is 0 or not finite are left out and listed.
    ts_rmse_K         the surface temperature's RMSE, K (absent without a `ts` channel)
    test_rmse_ratio_mean, test_ts_rmse_K   the same on the test runs

The validation split is drawn with run.seed when train.validation_runs is empty, so a seed's
variants share its split (pairs stay fair) while seeds may differ in it; name validation_runs
to hold it fixed.

The aggregation pairs each variant with the full model by seed (astrohpc.analysis.paired
.effect_table, difference = variant − full, so > 0: removing the component made it worse) and
writes ablation.csv (variant × metric: means, difference, 95 % bootstrap CI, Cohen's d, t-test,
Wilcoxon, their Holm-adjusted p over ONE family of every variant × metric test, significance at
0.05, and what the row resolves) and ablation.json (the same rows, every seed's metrics, the
unpaired seeds, and the design's resolving power: the smallest p an exact Wilcoxon can reach
with this many seeds, before and after Holm, and the smallest effect the t-test detects with
80 % power at Holm's first step). Fewer than MIN_SEEDS seeds is said in the record; a seed
without its partner (a partial aggregation) is listed, never dropped silently.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Optional

from astrohpc.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FULL = "full"
MIN_SEEDS = 5  # 5 pairs: the exact Wilcoxon's smallest two-sided p is 2/32 = 0.0625; fewer is weaker still
SUMMARY_KEYS = ("status", "step", "total_steps", "epoch", "best", "wall_s", "run_dir", "split", "exports")
CSV_COLUMNS = ("variant", "metric", "n", "seeds", "unpaired_seeds", "n_dropped", "mean_full", "mean_variant", "diff",
               "ci_low", "ci_high", "cohens_d", "t", "p_t", "wilcoxon", "p_wilcoxon", "p_holm", "p_wilcoxon_holm",
               "significant", "resolution", "reason", "partial")


# ---------------------------------------------------------------------------- components


def components(cfg: Any) -> dict[str, list[str]]:
    """The components this config can ablate: name -> overrides (`key.path=value`), in a fixed
    order (see the module doc)."""
    m = cfg.model
    out: dict[str, list[str]] = {}
    for term, weight in m.physics.loss_weights.items():
        if weight > 0:
            out[f"no_{term}_loss"] = [f"model.physics.loss_weights.{term}=0"]
    correctors = list(m.physics.correctors or [])
    for corrector in correctors:
        rest = [c for c in correctors if c != corrector]
        out[f"no_{corrector}_corrector"] = [f"model.physics.correctors=[{', '.join(rest)}]"]
    if len(correctors) > 1:
        out["no_correctors"] = ["model.physics.correctors=[]"]
    if m.architecture == "unet":
        out["no_attention" if m.unet.attention else "attention"] = [
            f"model.unet.attention={'false' if m.unet.attention else 'true'}"]
        if m.unet.depth > 1:
            out["single_scale"] = ["model.unet.depth=1"]
    if m.architecture == "transformer" and m.transformer.fusion == "cross":
        out["concat_fusion"] = ["model.transformer.fusion=concat"]
    if m.uncertainty.method == "gaussian":
        out["no_uncertainty"] = ["model.uncertainty.method=none"]
    return out


def chosen_components(cfg: Any) -> dict[str, list[str]]:
    """study.components (default: all of `components(cfg)`); ConfigError naming the valid ones."""
    valid = components(cfg)
    wanted = list(cfg.study.components) or list(valid)
    bad = [c for c in wanted if c not in valid]
    if bad:
        raise ConfigError(f"study.components: {', '.join(bad)} not applicable to this config; valid here: "
                          f"{', '.join(valid) or 'none'} (a component ablates only what the base model has)")
    if not wanted:
        raise ConfigError("this config has no component to ablate (no physics loss term, corrector, attention, "
                          "depth > 1, cross fusion or Gaussian head)")
    return {c: valid[c] for c in wanted}


def variant_config(cfg: Any, overrides: list[str], run_root: Path | str, run_name: str, seed: int,
                   cube: Optional[str] = None) -> Any:
    """The training config of one task: `cfg` with the overrides applied, run.root / run.name /
    run.seed set, and train.cube set when given. ConfigError when an override is invalid."""
    from astrohpc.config import Config, deep_merge, from_dict, parse_override, to_dict

    raw = to_dict(cfg)
    for item in overrides:
        key, value = parse_override(item)
        nested: Any = value
        for part in reversed(key.split(".")):
            nested = {part: nested}
        raw = deep_merge(raw, nested)
    raw["run"] = {**raw["run"], "root": str(run_root), "name": run_name, "seed": int(seed)}
    if cube is not None:
        raw["train"] = {**raw["train"], "cube": cube}
    return from_dict(Config, raw, source=f"ablation {run_name} ({'; '.join(overrides) or 'no override'})")


# ---------------------------------------------------------------------------- expand / run


def expand(cfg: Any) -> list[dict[str, Any]]:
    """The full model for every seed, then every chosen component for every seed. The cube path
    is resolved here (where the study is planned), so array tasks may start anywhere."""
    from astrohpc.data.cube import read_meta
    from astrohpc.data.split import split_runs
    from astrohpc.train.data import cube_path

    chosen = chosen_components(cfg)
    if not cfg.train.validate:
        raise ConfigError("train.validate is false: the ablation scores each variant on its validation runs")
    cube = cube_path(cfg).resolve()
    names = read_meta(cube).run_names
    t = cfg.train
    for seed in cfg.study.seeds:
        if not split_runs(names, t.validation_runs, t.test_runs, t.validation_fraction, seed).validation:
            raise ConfigError(f"seed {seed}: the split of {cube} has no validation run; set train.validation_runs "
                              "(or validation_fraction > 0 with at least 2 non-test runs)")
    seeds = list(cfg.study.seeds)
    tasks = [{"variant": FULL, "seed": s, "overrides": [], "cube": str(cube)} for s in seeds]
    tasks += [{"variant": c, "seed": s, "overrides": list(o), "cube": str(cube)} for c, o in chosen.items()
              for s in seeds]
    return tasks


def task_config(task: dict[str, Any], cfg: Any, study_dir: Path) -> Any:
    """The training config of `task` (its run directory inside the study folder)."""
    from astrohpc.studies.tasks import task_dir

    return variant_config(cfg, task["overrides"], task_dir(study_dir, task["id"]) / "train",
                          f"{task['variant']}-seed{task['seed']}", task["seed"], cube=task.get("cube"))


def channel_metrics(rows: list[dict[str, Any]], prefix: str = "") -> tuple[dict[str, float], list[str]]:
    """({prefix}rmse_ratio_mean, {prefix}ts_rmse_K — only with a ts channel) from validation rows
    (channel, units, rmse and persistence_rmse or climatology_rmse), and the channels left out of
    the ratio."""
    if not rows:
        raise DataError("no per-channel validation rows to score")
    baseline = "persistence_rmse" if "persistence_rmse" in rows[0] else "climatology_rmse"
    ratios, excluded = [], []
    for row in rows:
        model, base = float(row["rmse"]), float(row[baseline])
        if base > 0 and math.isfinite(base) and math.isfinite(model):
            ratios.append(model / base)
        else:
            excluded.append(row["channel"])
    if not ratios:
        raise DataError(f"no channel has a positive, finite {baseline}: the ratio is undefined")
    ts = next((r for r in rows if r["channel"] == "ts"), None)
    if ts is not None and ts["units"] != "K":
        raise DataError(f"the ts channel has units {ts['units']!r}, expected K")
    metrics = {f"{prefix}rmse_ratio_mean": sum(ratios) / len(ratios)}
    if ts is not None:
        metrics[f"{prefix}ts_rmse_K"] = float(ts["rmse"])
    return metrics, excluded


def score_runs(export: str | Path, runs: list[str], unroll_steps: int) -> list[dict[str, Any]]:
    """Per-channel rows (as the trainer's validation) of exported weights on the cube's `runs`:
    the emulator stepped `unroll_steps` from every window beside persistence, or the climate
    surrogate's time means beside the training climatology."""
    import torch

    from astrohpc.data.cube import read_meta
    from astrohpc.train.export import load_exported
    from astrohpc.train.validate import validate_climate, validate_emulator

    model, info = load_exported(export)
    meta = read_meta(info["cube"])
    plan = model.plan
    ids = [meta.run_names.index(r) for r in runs]
    names = list(plan.describe()["channel_names"])
    units = [meta.units[c] for c in plan.cube_channels]
    common = {"variables": list(plan.variables), "param_norm": info["param_norm"], "static": bool(plan.static)}
    cpu = torch.device("cpu")
    if info["config"]["model"]["task"] == "emulator":
        from astrohpc.data.dataset import WindowDataset

        data = WindowDataset(info["cube"], 1, unroll_steps, runs=ids, **common)
        loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=False)
        return validate_emulator(model, loader, cpu, unroll_steps, units, names)["channels"]
    from astrohpc.data.runs import RunDataset
    from astrohpc.studies import baselines as base
    from astrohpc.studies.baselines import read_time_means

    spectral = info["config"]["model"]["mode"] in ("spectral", "joint")
    spinup = info["config"]["model"]["spinup_steps"]
    train_ids = [meta.run_names.index(r) for r in info["run_split"]["train"]]
    means = read_time_means(info["cube"], train_ids, plan.cube_channels, spinup)
    climatology = torch.from_numpy(base.climatology(means)).float()
    loader = torch.utils.data.DataLoader(RunDataset(info["cube"], spinup, runs=ids, spectra=spectral, **common),
                                         batch_size=4, shuffle=False)
    return validate_climate(model, loader, cpu, climatology, units, names,
                            head_weights=info["config"]["model"]["head_weights"])["channels"]


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    from astrohpc.train.export import read_export
    from astrohpc.train.trainer import train

    train_cfg = task_config(task, cfg, study_dir)
    summary = train(train_cfg)
    if summary["status"] != "finished":
        raise RuntimeError(f"training of {task['variant']} seed {task['seed']} stopped ({summary['status']}) at step "
                           f"{summary['step']}/{summary['total_steps']}; rerun the task to resume it")
    if not summary.get("best") or "best" not in summary.get("exports", {}):
        raise DataError(f"{summary['run_dir']}: no best weights (no validation ran); the ablation needs "
                        "validation runs")
    export = summary["exports"]["best"]
    validation = read_export(export)["validation"]
    metrics, excluded = channel_metrics(validation["channels"])
    scores: dict[str, Any] = {"validation": validation["channels"]}
    test_runs = list(summary["split"]["test"])
    if test_runs:
        rows = score_runs(export, test_runs, train_cfg.train.unroll_steps)
        test_metrics, test_excluded = channel_metrics(rows, prefix="test_")
        metrics.update(test_metrics)
        scores["test"] = rows
        excluded = sorted(set(excluded) | set(test_excluded))
    return {"variant": task["variant"], "seed": task["seed"], "overrides": task["overrides"], "metrics": metrics,
            "ratio_channels_excluded": excluded, "best_epoch": summary["best"]["epoch"], "channels": scores,
            "train_summary": {k: summary.get(k) for k in SUMMARY_KEYS}}


# ---------------------------------------------------------------------------- aggregation


def per_seed(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[int, Optional[float]]]]:
    """metric -> variant -> seed -> value (a task without the metric has no entry: its seed shows
    up as unpaired; None, a metric that could not be computed, counts as a dropped pair)."""
    table: dict[str, dict[str, dict[int, Optional[float]]]] = {}
    for res in results:
        for metric, value in res["metrics"].items():
            table.setdefault(metric, {}).setdefault(res["variant"], {})[int(res["seed"])] = value
    return table


def effect_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """effect_table of every metric (variants against the full model, paired by seed), flattened
    into rows with mean_full / mean_variant / diff, Holm-adjusted as one family over every
    variant × metric; undefined metrics enter as NaN (dropped with their partner and counted in
    n_dropped)."""
    from astrohpc.analysis.paired import adjust_family, effect_table

    rows = []
    for metric, by_variant in per_seed(results).items():
        full = {s: _number(v) for s, v in by_variant.get(FULL, {}).items()}
        variants = {name: {s: _number(v) for s, v in values.items()} for name, values in by_variant.items()
                    if name != FULL}
        if not variants:
            continue
        for row in effect_table(full, variants, metric):
            rows.append({**row, "mean_full": row["mean_b"], "mean_variant": row["mean_a"], "diff": row["mean_diff"]})
    return adjust_family(rows)


def design(rows: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The resolving power of the study (astrohpc.analysis.paired.resolving_power) at its fewest
    pairs among the tested rows and its family size, with every row's `resolution` set; None when
    no row was tested."""
    from astrohpc.analysis.paired import resolution_verdict, resolving_power

    tested = [r for r in rows if r["n"] >= 2]
    if not tested:
        for row in rows:
            row["resolution"] = resolution_verdict(row, None)
        return None
    power = resolving_power(min(r["n"] for r in tested), len(tested))
    for row in rows:
        row["resolution"] = resolution_verdict(row, power["t_detectable_d"])
    return power


def _number(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """ablation.csv and ablation.json (see the module doc); seed count and unpaired seeds in the record."""
    from astrohpc.atomic_write import write_json, write_text

    partial = bool(record.get("partial", False))
    from astrohpc.analysis.paired import wilcoxon_min_p

    rows = effect_rows(results)
    power = design(rows)
    seeds = sorted({int(r["seed"]) for r in results})
    record["seeds"] = seeds
    record["resolving_power"] = power
    if len(cfg.study.seeds) < MIN_SEEDS:
        n = len(cfg.study.seeds)
        record["warning"] = (f"{n} seeds: the exact Wilcoxon's smallest two-sided p with {n} pairs is "
                             f"{wilcoxon_min_p(n):.3g} and the t-test has {n - 1} degree(s) of freedom; use "
                             f"{MIN_SEEDS} or more")
        log.warning("%s", record["warning"])
    unpaired = {f"{r['variant']}/{r['metric']}": r["unpaired_seeds"] for r in rows if r["unpaired_seeds"]}
    record["unpaired_seeds"] = unpaired
    if unpaired:
        log.warning("seeds without a partner (left out of their pair): %s", unpaired)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        reason = "; ".join(dict.fromkeys(r for r in (row["reason"], row["t_reason"], row["wilcoxon_reason"]) if r))
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS} | {"reason": reason, "partial": partial})
    write_text(study_dir / "ablation.csv", buffer.getvalue())
    write_json(study_dir / "ablation.json", {
        "partial": partial, "seeds": seeds, "warning": record.get("warning"), "unpaired_seeds": unpaired,
        "resolving_power": power,
        "components": {r["variant"]: r["overrides"] for r in results},
        "per_seed": per_seed(results), "rows": rows})
    return {"table": str(study_dir / "ablation.csv"), "json": str(study_dir / "ablation.json")}


def _cell(value: Any) -> Any:
    """A CSV cell: lists as space-separated values, None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return value
