"""Render an sbatch script from a template in slurm/ and a checked set of options.

The keyword arguments of `render_sbatch` are the option list: a misspelled option raises
SlurmError listing the valid ones, and every value is checked for its form. User strings
never reach the shell unquoted: the command is an argv list joined with shlex, environment
values are shell-quoted, and directive values may hold no control characters.

Templates are plain text with three markers, each at the start of a line of its own:
`@@DIRECTIVES@@` (the #SBATCH lines), `@@SETUP@@` (site set-up and exports) and
`@@COMMAND@@` (the command; the template may follow it with shell text, e.g. `|| status=$?`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Mapping, Sequence

from astrohpc.errors import SlurmError

SLURM_TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "slurm"
MARKERS = ("@@DIRECTIVES@@", "@@SETUP@@", "@@COMMAND@@")

_INT = r"[1-9][0-9]*"
_MEM = r"\d+([KMGT]B?)?"  # 16G and 16GB alike, as Slurm reads them
_TIME = r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)"
_ARRAY_RANGE = r"\d+(-\d+(:\d+)?)?"
_EXPORT_ITEM = r"[A-Za-z_][A-Za-z0-9_]*(=[^\s,'\"\\]*)?"
_DEP_ITEM = r"(after|afterok|afterany|afternotok|aftercorr|afterburstbuffer)(:\d+(_\d+)?(\+\d+)?)+|singleton"

# python keyword -> (sbatch long option, regex the value must match, or "flag" for on/off options)
SBATCH_OPTIONS: dict[str, tuple[str, str]] = {
    "job_name": ("job-name", r"[^\s'\"\\]+"),
    "partition": ("partition", r"[A-Za-z0-9_.,-]+"),
    "account": ("account", r"[A-Za-z0-9_.-]+"),
    "qos": ("qos", r"[A-Za-z0-9_.-]+"),
    "reservation": ("reservation", r"[A-Za-z0-9_.-]+"),
    "time": ("time", _TIME),
    "nodes": ("nodes", rf"{_INT}(-{_INT})?"),
    "ntasks": ("ntasks", _INT),
    "ntasks_per_node": ("ntasks-per-node", _INT),
    "cpus_per_task": ("cpus-per-task", _INT),
    "mem": ("mem", _MEM),
    "mem_per_cpu": ("mem-per-cpu", _MEM),
    "mem_per_gpu": ("mem-per-gpu", _MEM),
    "gres": ("gres", r"[A-Za-z0-9_:,.-]+"),
    "gpus": ("gpus", r"([A-Za-z0-9_.-]+:)?\d+"),
    "gpus_per_node": ("gpus-per-node", r"([A-Za-z0-9_.-]+:)?\d+"),
    "gpus_per_task": ("gpus-per-task", r"([A-Za-z0-9_.-]+:)?\d+"),
    "constraint": ("constraint", r"[A-Za-z0-9_&|\[\]*,.:-]+"),
    "array": ("array", rf"{_ARRAY_RANGE}(,{_ARRAY_RANGE})*(%{_INT})?"),
    "output": ("output", r"[^\s'\"\\;&|<>`$]+"),
    "error": ("error", r"[^\s'\"\\;&|<>`$]+"),
    "chdir": ("chdir", r"[^\s'\"\\;&|<>`$]+"),
    "dependency": ("dependency", rf"({_DEP_ITEM})([,?]({_DEP_ITEM}))*"),
    "kill_on_invalid_dep": ("kill-on-invalid-dep", r"yes|no"),
    "signal": ("signal", r"((B|R):)?[A-Z0-9]+(@\d+)?"),
    "open_mode": ("open-mode", r"append|truncate"),
    "export": ("export", rf"(ALL|NONE|{_EXPORT_ITEM})(,{_EXPORT_ITEM})*"),
    "mail_type": ("mail-type", r"[A-Z_,0-9]+"),
    "mail_user": ("mail-user", r"[A-Za-z0-9_.+@-]+"),
    "begin": ("begin", r"[A-Za-z0-9:+-]+"),
    "nice": ("nice", r"-?\d+"),
    "comment": ("comment", r"[A-Za-z0-9_.,:=+@/ -]+"),
    "exclude": ("exclude", r"[A-Za-z0-9_\[\],.-]+"),
    "nodelist": ("nodelist", r"[A-Za-z0-9_\[\],.-]+"),
    "distribution": ("distribution", r"[A-Za-z:,*]+"),
    "hint": ("hint", r"[A-Za-z_]+"),
    "wckey": ("wckey", r"[A-Za-z0-9_.-]+"),
    "exclusive": ("exclusive", "flag"),
    "requeue": ("requeue", "flag"),
    "no_requeue": ("no-requeue", "flag"),
    "overcommit": ("overcommit", "flag"),
}

_BY_LONG_NAME = {long: key for key, (long, _) in SBATCH_OPTIONS.items()}


def option_key(name: str) -> str:
    """Map `job-name`, `job_name` or `--job-name` to the keyword `job_name`; error if unknown."""
    key = name.lstrip("-").replace("-", "_")
    if key in SBATCH_OPTIONS:
        return key
    if name.lstrip("-") in _BY_LONG_NAME:
        return _BY_LONG_NAME[name.lstrip("-")]
    import difflib

    close = difflib.get_close_matches(key, SBATCH_OPTIONS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise SlurmError(f"unknown sbatch option {name!r}.{hint} Valid options: {', '.join(sorted(SBATCH_OPTIONS))}")


def directive_lines(**options: object) -> list[str]:
    """The `#SBATCH --name=value` lines for `options` (None and False are left out)."""
    lines = []
    for name, value in options.items():
        key = option_key(name)
        long, pattern = SBATCH_OPTIONS[key]
        if value is None or value is False:
            continue
        if pattern == "flag":
            if value is not True:
                raise SlurmError(f"sbatch option {key!r} is an on/off flag: give true or false, got {value!r}")
            lines.append(f"#SBATCH --{long}")
            continue
        text = str(value)
        if isinstance(value, bool) or not re.fullmatch(pattern, text):
            raise SlurmError(f"sbatch option {key}={text!r} is not a valid --{long} value "
                             f"(expected the form /{pattern}/)")
        lines.append(f"#SBATCH --{long}={text}")
    return lines


def _env_lines(env: Mapping[str, str]) -> list[str]:
    lines = []
    for name, value in env.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SlurmError(f"environment variable name {name!r} is not a valid shell name")
        lines.append(f"export {name}={shlex.quote(str(value))}")
    return lines


def render_sbatch(template: str | Path, command: Sequence[str], *, setup: Sequence[str] = (),
                  env: Mapping[str, str] | None = None, **options: object) -> str:
    """Return the text of an sbatch script.

    template: a file name under slurm/ (e.g. "array.sbatch") or a path.
    command: the argv the job runs, quoted for the shell here.
    setup: shell lines from the cluster profile (module loads), placed before the exports;
        they are trusted site configuration and are inserted as they are.
    env: variables exported in the job, values shell-quoted.
    options: sbatch options by keyword (see SBATCH_OPTIONS).
    """
    text = _read_template(template)
    if isinstance(command, str) or not command:
        raise SlurmError("render_sbatch: command must be a non-empty argv list, e.g. ['astrohpc', 'doctor']")
    for line in setup:
        if "\n" in line or "\x00" in line:
            raise SlurmError(f"slurm.setup line {line!r} holds a newline: give one shell line per entry")
    blocks = {
        "@@DIRECTIVES@@": "\n".join(directive_lines(**options)),
        "@@SETUP@@": "\n".join([*setup, *_env_lines(env or {})]),
        "@@COMMAND@@": shlex.join(str(c) for c in command),
    }
    for marker, block in blocks.items():
        text = text.replace(marker, block)
    return text


def _read_template(template: str | Path) -> str:
    path = Path(template)
    if not path.is_absolute() and not path.exists():
        path = SLURM_TEMPLATE_DIR / path
    if not path.is_file():
        available = sorted(p.name for p in SLURM_TEMPLATE_DIR.glob("*.sbatch"))
        raise SlurmError(f"sbatch template {template!s} not found; templates in {SLURM_TEMPLATE_DIR}: "
                         f"{', '.join(available)}")
    text = path.read_text(encoding="utf-8")
    missing = [m for m in MARKERS if m not in text]
    if missing or not text.startswith("#!"):
        raise SlurmError(f"sbatch template {path} must start with '#!' and hold the markers "
                         f"{', '.join(MARKERS)} (missing: {', '.join(missing) or 'none'})")
    return text
