"""render_sbatch: golden output, option checking, and quoting of hostile strings."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from astrohpc.errors import SlurmError
from astrohpc.launch import directive_lines, render_sbatch

GOLDEN = Path(__file__).parent / "golden"

ARRAY_OPTIONS = dict(job_name="astro-sweep", array="0-3%2", time="00:05:00", mem="512M", cpus_per_task=1,
                     output="logs/%A_%a.out", signal="B:USR1@60", kill_on_invalid_dep="yes", requeue=True,
                     exclusive=False, partition=None)


def test_golden_array_script():
    text = render_sbatch("job.sbatch", ["astrohpc", "gcm", "task", "runs/sweep dir"],
                         setup=["module load openmpi"], env={"OMP_NUM_THREADS": "1"}, **ARRAY_OPTIONS)
    golden = GOLDEN / "job_array.sbatch"
    if os.environ.get("ASTROHPC_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_unknown_option_lists_valid_ones():
    with pytest.raises(SlurmError) as err:
        render_sbatch("job.sbatch", ["true"], tiem="00:01:00")
    msg = str(err.value)
    assert "unknown sbatch option 'tiem'" in msg and "Did you mean time" in msg and "cpus_per_task" in msg


@pytest.mark.parametrize("options, match", [
    ({"time": "1:2:3:4"}, "not a valid --time"),
    ({"array": "0-3%"}, "not a valid --array"),
    ({"mem": "4GiB"}, "not a valid --mem"),
    ({"cpus_per_task": 0}, "not a valid --cpus-per-task"),
    ({"dependency": "afterok:12;reboot"}, "not a valid --dependency"),
    ({"job_name": "x\n#SBATCH --uid=0"}, "not a valid --job-name"),
    ({"job_name": "x; rm -rf ~"}, "not a valid --job-name"),
    ({"output": "$(touch /tmp/pwned)"}, "not a valid --output"),
    ({"exclusive": "yes"}, "on/off flag"),
    ({"nodes": True}, "not a valid --nodes"),
])
def test_bad_option_values(options, match):
    with pytest.raises(SlurmError, match=match):
        render_sbatch("job.sbatch", ["true"], **options)


def test_option_names_accept_sbatch_spelling():
    assert directive_lines(**{"job-name": "a", "--cpus-per-task": 2}) == [
        "#SBATCH --job-name=a", "#SBATCH --cpus-per-task=2"]


def test_missing_template_and_bad_command():
    with pytest.raises(SlurmError, match="templates in .*job.sbatch"):
        render_sbatch("nope.sbatch", ["true"])
    with pytest.raises(SlurmError, match="argv list"):
        render_sbatch("job.sbatch", "echo hi")
    with pytest.raises(SlurmError, match="not a valid shell name"):
        render_sbatch("job.sbatch", ["true"], env={"A-B": "1"})


def test_hostile_strings_stay_literal(tmp_path):
    """A config string `x; rm -rf ~` reaches the job as one literal argument, never as shell code."""
    canary = tmp_path / "canary"
    canary.write_text("alive")
    hostile = f"x; rm -f {canary}; echo $(id) `id`"
    script = tmp_path / "job.sh"
    script.write_text(render_sbatch("job.sbatch", ["printf", "%s\n", hostile], env={"NOTE": hostile},
                                    job_name="safe"))
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == hostile
    assert canary.read_text() == "alive"


@pytest.mark.parametrize("mem", ["16G", "16GB", "512M", "512MB", "2T", "4096"])
def test_memory_in_the_forms_slurm_reads(mem):
    assert directive_lines(mem=mem) == [f"#SBATCH --mem={mem}"]
