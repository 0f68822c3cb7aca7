#!/usr/bin/env python
"""The skill benchmark (`make skill`): both surrogates on the skill sweep, beside their baselines.

    tools/bench_skill.py [--no-slurm] [--train CONFIG] [--no-climate] [--leads 10] [--rollout-steps 10000]
                         [OVERRIDE ...]

1. the skill sweep (configs/gcm/skill.yaml) as a Slurm array on the local cluster
   (`astrohpc gcm sweep --submit --wait`; finished tasks come from ~/.cache/astrohpc/runs);
   --no-slurm runs it with local worker processes instead;
2. statistics of its step cube (`astrohpc data stats`);
3. the emulator (--train, default configs/train/skill.yaml, `astrohpc train`; a finished training is
   not redone; `make skill` then fine-tunes it with configs/train/skill_finetune.yaml);
4. its skill on the held-out runs (astrohpc.studies.skill.evaluate): RMSE by lead beside
   persistence, climatology and a linear inverse model; 10,000-step rollouts; cost;
5. the climate surrogate's leave-one-out study (`astrohpc study climate
   configs/study/climate_skill.yaml --local`) -> runs/climate/summary.json (--no-climate: keep the
   last one);
6. runs/skill/summary.json and the dated tables in docs/skill.md (date, commit, machine).
OVERRIDEs (KEY=VALUE) go to the training config (e.g. train.epochs=2 for a quick look).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.atomic_write import write_json, write_text  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402

SWEEP = REPO / "configs" / "gcm" / "skill.yaml"
TRAIN = REPO / "configs" / "train" / "skill.yaml"
CLIMATE = REPO / "configs" / "study" / "climate_skill.yaml"
SWEEP_DIR = REPO / "runs" / "skill" / "skill"
OUT = REPO / "runs" / "skill"
DOC = REPO / "docs" / "skill.md"
# the network's own error per step each conserved quantity is held to (before its corrector): the
# README's dry-mass target; water and energy are reported against none
CONSERVATION_TARGETS = {"dry_mass": 1e-8}
ASTROHPC = [sys.executable, "-m", "astrohpc"]


def sh(argv: list[str], env: dict | None = None) -> float:
    """Run one of the project's commands from the repository root; its wall time in s."""
    print("+", " ".join(argv), flush=True)
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, check=True, env=env)
    return time.perf_counter() - started


def slurm_env() -> dict:
    subprocess.run(["bash", "tools/local-slurm.sh", "start"], cwd=REPO, check=True)
    line = subprocess.run(["bash", "tools/local-slurm.sh", "env"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout
    env = dict(os.environ)
    for part in line.replace("export ", "").split():
        if "=" in part:
            key, value = part.split("=", 1)
            env[key] = value.strip("'\"")
    return env


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}, {os.cpu_count()} cores, {cpu or platform.machine()}, no GPU"


def headline(evaluation: dict, train_summary: dict) -> dict:
    """The keys issue 17 asks for, from the evaluation."""
    from astrohpc.studies.skill import ratios

    inside = evaluation["scores"]["inside"]["rmse"]
    out = {"lead1_rmse_ratio_to_persistence": ratios(inside, "persistence"),
           "lead1_rmse_ratio_to_lim": ratios(inside, "lim"),
           "lead5_rmse_ratio_to_lim": ratios(inside, "lim", lead=4),
           "rmse_by_lead": inside}
    if "outside" in evaluation["scores"]:
        o = evaluation["scores"]["outside"]["rmse"]
        out["outside"] = {"lead1_rmse_ratio_to_persistence": ratios(o, "persistence"),
                          "lead1_rmse_ratio_to_lim": ratios(o, "lim"), "rmse_by_lead": o}
    r = evaluation["rollout"]

    def members_summary(runs: list[str]) -> dict:
        members = [m for m in r["members"] if m["run"] in runs]
        if not members:
            return {}
        return {"members": len(members), "runs": runs, "steps_asked": r["steps_asked"],
                "members_without_flag": sum(m["flag"] is None for m in members),
                "flags": [m["flag"] for m in members], "steps_valid": [m["steps_valid"] for m in members],
                "gm_ts_drift_K_per_1000_steps": max(abs(m["gm_ts_drift_K_per_1000_steps"]) for m in members),
                "last1000_ts_bias_K": max(abs(m["last1000_ts_bias_K"]) for m in members),
                "note": "drift and last-1,000-step mean over each member's steps before its flag, if any"}

    out["rollout"] = {**members_summary(evaluation["inside_runs"]),
                      "wall_s_per_10000_steps": r["batch1"]["wall_s_per_10000_steps"],
                      "wall_s_per_10000_steps_note": f"batch 1, {r['batch1']['steps']} steps timed, scaled to 10,000"}
    if evaluation["outside_runs"]:
        out["outside"] = {**out.get("outside", {}), "rollout": members_summary(evaluation["outside_runs"])}
    gcm = evaluation["gcm_cost"]
    cpu_day = r["cpu_s_per_member_step"]  # one step = one simulated day
    out["cost_ratio_vs_exoplasim"] = (gcm["exoplasim_cpu_s_per_day"] / cpu_day
                                      if gcm.get("exoplasim_cpu_s_per_day") else None)
    out["cost"] = {"emulator_cpu_s_per_planet_day_batched": cpu_day, "batch": r["batch"], **gcm,
                   "measure": "CPU time, process + children (getrusage), both sides"}
    out["conservation"] = evaluation["scores"]["inside"]["conservation_per_step"]
    out["train_wall_s"] = train_summary.get("wall_s")
    out["train_best"] = train_summary.get("best")
    return out


def fmt(x, digits=3) -> str:
    return "—" if x is None else (f"{x:.{digits}g}" if isinstance(x, float) else str(x))


def skill_table(s: dict, climate: dict | None) -> str:
    rows = ["| figure | measured | target |", "|---|---|---|"]
    for key, label, target in (("lead1_rmse_ratio_to_persistence", "lead-1 RMSE ÷ persistence", "≤ 0.5"),
                               ("lead1_rmse_ratio_to_lim", "lead-1 RMSE ÷ LIM", "< 1"),
                               ("lead5_rmse_ratio_to_lim", "lead-5-day RMSE ÷ LIM", "< 1")):
        v = s[key]
        ok = all(x <= (0.5 if "persistence" in key else 1.0) for x in v.values())
        rows.append(f"| {label} (ts / ta / ua), inside runs | {' / '.join(fmt(v[k]) for k in v)} | {target} "
                    f"{'✔' if ok else '✘'} |")
    rmse = s["rmse_by_lead"]
    below = all(rmse["emulator"][v][i] < rmse["persistence"][v][i] for v in rmse["emulator"]
                for i in range(len(rmse["emulator"][v])))
    rows.append(f"| RMSE below persistence at every lead (1–{len(rmse['emulator']['ts'])} days) | "
                f"{'yes' if below else 'no'} | through day 10 {'✔' if below else '✘'} |")
    r = s["rollout"]
    ok = r["members_without_flag"] == r["members"]
    rows.append(f"| {r['steps_asked']:,}-step rollouts without a divergence flag, inside runs | "
                f"{r['members_without_flag']} of {r['members']} (steps before the flag: "
                f"{', '.join(map(str, r['steps_valid']))}) | every member {'✔' if ok else '✘'} |")
    drift, bias = r["gm_ts_drift_K_per_1000_steps"], r["last1000_ts_bias_K"]
    rows.append(f"| largest global-mean ts drift, inside runs | {fmt(drift)} K per 1,000 steps | "
                f"≤ 1 {'✔' if r['gm_ts_drift_K_per_1000_steps'] <= 1 else '✘'} |")
    rows.append(f"| largest last-1,000-step mean ts − GCM climate (its last 60 days), inside runs | {fmt(bias)} K | "
                f"within 2 {'✔' if r['last1000_ts_bias_K'] <= 2 else '✘'} |")
    rows.append(f"| wall time per 10,000 steps, batch 1 ({r['wall_s_per_10000_steps_note']}) | "
                f"{fmt(r['wall_s_per_10000_steps'])} s | < 60 {'✔' if r['wall_s_per_10000_steps'] < 60 else '✘'} |")
    c = s["cost_ratio_vs_exoplasim"]
    rows.append(f"| cost per planet-day vs ExoPlaSim, CPU time both sides, batched | {fmt(c)}× | ≥ 1,000 "
                f"{'✔' if c and c >= 1000 else '✘'} |")
    for q, m in s["conservation"].items():
        target = CONSERVATION_TARGETS.get(q)
        verdict = "—" if target is None else f"{target:g} {'✔' if m['before']['max_abs'] <= target else '✘'}"
        if "gcm" in m:  # what the GCM's own steps leave with the same fields and fluxes
            verdict += f" (the GCM's own steps: mean {fmt(m['gcm']['mean_abs'])})"
        rows.append(f"| {q.replace('_', '-')} error per step ({m['units']}), network alone (before the correctors) | "
                    f"mean {fmt(m['before']['mean_abs'])}, max {fmt(m['before']['max_abs'])} | {verdict} |")
        rows.append(f"| the same after the correctors ({m['corrector']}) | mean {fmt(m['after']['mean_abs'])}, "
                    f"max {fmt(m['after']['max_abs'])} | — |")
    o = s.get("outside", {})
    if o:
        ro = o.get("rollout", {})
        rows.append(f"| outside run (beside): lead-1 RMSE ÷ persistence (ts / ta / ua) | "
                    f"{' / '.join(fmt(x) for x in o['lead1_rmse_ratio_to_persistence'].values())} | — |")
        if ro:
            rows.append(f"| outside run (beside): rollout steps before a flag; ts drift; last-1,000 bias | "
                        f"{', '.join(map(str, ro['steps_valid']))}; {fmt(ro['gm_ts_drift_K_per_1000_steps'])} K per "
                        f"1,000; {fmt(ro['last1000_ts_bias_K'])} K | — |")
    lines = ["\n".join(rows), ""]
    lines.append("RMSE by lead (inside runs, K for ts/ta, m s⁻¹ for ua):\n")
    lines.append("| method | variable | " + " | ".join(f"day {i + 1}" for i in range(len(rmse['emulator']['ts'])))
                 + " |")
    lines.append("|---|---|" + "---|" * len(rmse["emulator"]["ts"]))
    for method in ("emulator", "persistence", "climatology", "lim"):
        for v in rmse[method]:
            lines.append(f"| {method} | {v} | " + " | ".join(f"{x:.3g}" for x in rmse[method][v]) + " |")
    if climate:
        eq = climate["equilibrium"]
        lines += ["", "Climate surrogate (GP), leave-one-out over the runs inside the envelope "
                      f"({climate['n_runs']} runs; each run's climate: the mean of its last {climate['average_days']} "
                      "days). Over that window the GCM runs' TOA imbalance spans "
                      f"{min(r['toa_imbalance_W_m2'] for r in eq):.1f} to "
                      f"{max(r['toa_imbalance_W_m2'] for r in eq):.1f} W m⁻², ts trend "
                      f"{min(r['ts_trend_K_per_yr'] for r in eq):.0f} to "
                      f"{max(r['ts_trend_K_per_yr'] for r in eq):.0f} K yr⁻¹ "
                      "(runs/climate/climate_summary.json).", "",
                  "| variable | GP | nearest run | linear | quadratic | ensemble mean | GCM twin floor | "
                  "GP ÷ nearest | GP ÷ best regression | GP ÷ twin floor | 95 % coverage |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        floor, to_floor = climate.get("twin_floor") or {}, climate.get("loo_ratio_to_twin_floor") or {}
        for v, by in climate["loo_rmse"].items():
            lines.append(f"| {v} | {fmt(by['gp'])} | {fmt(by['nearest'])} | {fmt(by['linear'])} | "
                         f"{fmt(by['quadratic'])} | {fmt(by['ensemble_mean'])} | {fmt(floor.get(v))} | "
                         f"{fmt(climate['loo_ratio_to_nearest'][v])} | "
                         f"{fmt(climate['loo_ratio_to_best_regression'][v])} | "
                         f"{fmt((to_floor.get(v) or {}).get('gp'))} | {fmt(climate['coverage95'][v])} |")
        lines += ["", f"Twin floor: {climate.get('twin_floor_note', 'not measured')}."]
        network = {v: by["network"] for v, by in climate["loo_rmse"].items() if "network" in by}
        if network:
            lines += ["", "The climate network (configs/model/climate_transformer.yaml's transformer, trained in each "
                          "leave-one-out task on the same runs, same target) in the same study, RMSE: " +
                      ", ".join(f"{v} {fmt(x)} (GP {fmt(climate['loo_rmse'][v]['gp'])})" for v, x in network.items())
                      + "."]
        ood = climate["ood"]
        lines.append("")
        gcm_cpu, speedup = climate.get("exoplasim_cpu_s_per_run"), climate.get("speedup_cpu_vs_exoplasim_run")
        lines.append(f"Out-of-envelope flag: outside run flagged {ood['outside_flagged']}; inside runs unflagged "
                     f"{ood['inside_unflagged_fraction']:.2f}. Cost per prediction "
                     f"{fmt(climate['cost_s_per_prediction'])} CPU s vs ExoPlaSim {fmt(gcm_cpu)} CPU s per run "
                     f"(×{fmt(speedup)}).")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-slurm", action="store_true", help="run the sweep with local worker processes")
    ap.add_argument("--train", default=str(TRAIN), help="the emulator's training config (default %(default)s)")
    ap.add_argument("--no-climate", action="store_true", help="do not rerun the climate study (keep runs/climate)")
    ap.add_argument("--leads", type=int, default=10)
    ap.add_argument("--stride", type=int, default=5)
    ap.add_argument("--rollout-steps", type=int, default=10000)
    ap.add_argument("--timing-steps", type=int, default=1000)
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild summary.json and docs/skill.md from runs/skill/evaluation.json and the studies")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE for the training config")
    args = ap.parse_args()
    train_cfg = Path(args.train)
    if args.report_only:
        return write_outputs(json.loads((OUT / "evaluation.json").read_text()), train_cfg, args.overrides, None,
                             None, None)
    started = time.perf_counter()
    env = dict(os.environ)
    if args.no_slurm:
        sweep_s = sh([*ASTROHPC, "gcm", "sweep", str(SWEEP), "--local"])
    else:
        env = slurm_env()
        sweep_s = sh([*ASTROHPC, "gcm", "sweep", str(SWEEP), "--submit", "--wait", "--timeout", "5400"], env=env)
    sh([*ASTROHPC, "data", "stats", str(SWEEP_DIR / "datacube_step.h5")])
    from astrohpc.config import load_config
    from astrohpc.studies.skill import evaluate

    cfg = load_config(train_cfg, args.overrides)
    run_dir = Path(cfg.run.root) / cfg.run.name
    metrics = REPO / run_dir / "metrics.json"
    done = json.loads(metrics.read_text()) if metrics.is_file() else {}
    if done.get("status") == "finished" and done.get("step") == done.get("total_steps"):
        # a finished training of this config (the trainer refuses another config's checkpoints): its own
        # summary keeps the training's wall time; running it again would only re-export
        print(f"+ training in {run_dir} already finished ({done['wall_s']:.0f} s): reused", flush=True)
        train_s = None
    else:
        train_s = sh([*ASTROHPC, "train", str(train_cfg), *args.overrides])
    evaluation = evaluate(REPO / run_dir / "export" / "best.pt", leads=args.leads, stride=args.stride,
                          rollout_steps=args.rollout_steps, timing_steps=args.timing_steps, sweep=SWEEP_DIR)
    evaluation["train_config"] = str(train_cfg.resolve().relative_to(REPO)) if train_cfg.resolve().is_relative_to(
        REPO) else str(train_cfg)
    write_json(OUT / "evaluation.json", evaluation)
    if not args.no_climate:
        sh([*ASTROHPC, "study", "climate", str(CLIMATE), "--local", "--replace"])
    return write_outputs(evaluation, train_cfg, args.overrides, sweep_s, train_s, time.perf_counter() - started)


def write_outputs(evaluation: dict, train_cfg: Path, overrides: list[str], sweep_s, train_s, total_s) -> int:
    """runs/skill/summary.json and a dated section of docs/skill.md."""
    from astrohpc.config import load_config

    cfg = load_config(train_cfg, overrides)
    train_summary = json.loads((REPO / cfg.run.root / cfg.run.name / "metrics.json").read_text())
    climate_path = REPO / "runs" / "climate" / "climate_summary.json"
    climate = json.loads(climate_path.read_text()) if climate_path.is_file() else None
    prov = collect()
    summary = {**headline(evaluation, train_summary), "sweep_wall_s": sweep_s, "train_command_wall_s": train_s,
               "total_wall_s": total_s, "git": prov["git"],
               "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "host": machine(),
               "inside_runs": evaluation["inside_runs"], "outside_runs": evaluation["outside_runs"]}
    write_json(OUT / "summary.json", summary)
    dirty = " (dirty)" if prov["git"].get("dirty") else ""
    stamp = (f"## {summary['date'][:10]} — git {prov['git']['commit'][:7]}{dirty}, {summary['host']}, "
             f"emulator of {evaluation.get('train_config', 'configs/train/skill.yaml')}")
    body = skill_table(summary, climate)
    old = DOC.read_text() if DOC.is_file() else ""
    head, _, rest = old.partition("\n## ")
    intro = head if head.strip() else "# Skill of the surrogates (`make skill`)\n"
    write_text(DOC, f"{intro.rstrip()}\n\n{stamp}\n\n{body}\n" + (f"\n## {rest}" if rest else ""))
    print(f"wrote {OUT / 'summary.json'} and {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
