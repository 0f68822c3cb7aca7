"""The CLI as a user runs it: doctor, config show, slurm render; errors as one line, exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from astrohpc.cli import main
from astrohpc.doctor import CHECKS


def astrohpc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "astrohpc", *args], capture_output=True, text=True)


def test_doctor_reports_every_component():
    proc = astrohpc("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = [line.split()[1] for line in proc.stdout.splitlines() if line[:4] in ("ok  ", "FAIL", "--  ")]
    assert names == list(CHECKS)
    assert "parallel (mpio) yes" in proc.stdout


@pytest.mark.skipif(shutil.which("apptainer") or shutil.which("singularity"), reason="apptainer present")
def test_doctor_fails_when_a_required_component_is_missing():
    proc = astrohpc("doctor", "--require", "apptainer")
    assert proc.returncode == 1
    assert "FAIL apptainer" in proc.stdout and "missing required component(s): apptainer" in proc.stdout
    proc = astrohpc("doctor", "--require", "apptainr")
    assert proc.returncode == 2 and "unknown component(s) apptainr" in proc.stderr


def test_config_show_resolves_extends_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("slurm: {partition: gpu}\n")
    (tmp_path / "exp.yaml").write_text("extends: base.yaml\nplanet: {preset: trappist1e}\n")
    proc = astrohpc("config", "show", str(tmp_path / "exp.yaml"), "planet.instellation_W_m2=1100", "--hash")
    assert proc.returncode == 0, proc.stderr
    assert "partition: gpu" in proc.stdout and "instellation_W_m2: 1100.0" in proc.stdout
    assert "name: trappist1e" in proc.stdout and "# config_hash: " in proc.stdout


def test_errors_are_one_line_with_exit_2(tmp_path):
    (tmp_path / "bad.yaml").write_text("gcm: {levles: 10}\n")
    proc = astrohpc("config", "show", str(tmp_path / "bad.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown key 'gcm.levles'" in proc.stderr
    proc = astrohpc("slurm", "render", "-o", "tme=00:01:00", "--", "true")
    assert proc.returncode == 2 and "unknown sbatch option 'tme'" in proc.stderr


def test_slurm_render_quotes_the_command():
    proc = astrohpc("slurm", "render", "-o", "array=0-3", "--", "echo", "x; rm -rf ~")
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --array=0-3" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "echo 'x; rm -rf ~'"


def _commands(parser, path=("astrohpc",)):
    """(path, parser) for the top-level parser and every subcommand below it."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def test_every_command_and_argument_has_help():
    import argparse

    from astrohpc.cli import build_parser

    commands = list(_commands(build_parser()))
    assert len(commands) > 30  # every group and its verbs were walked
    missing = []
    for path, parser in commands:
        if len(path) > 1 and not parser.description:
            missing.append(f"{' '.join(path)}: no description")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    assert not missing, "\n".join(missing)


def test_subcommand_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["study", "rollout", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: astrohpc study rollout" in out
    assert "config overrides" in out and "study config (YAML" in out
    assert out.split("\n\n")[1].strip()  # the description paragraph after the usage
