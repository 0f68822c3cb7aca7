"""Check an Apptainer definition file before a build that would take an hour to fail.

Apptainer itself ignores a misspelled section (`%enviroment`) without a word, and the
`spython` parser accepts a file without `Bootstrap:`; this check refuses both.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from astrohpc.errors import AstrohpcError

SECTIONS = frozenset({"setup", "files", "environment", "post", "runscript", "startscript", "test",
                      "labels", "help", "arguments", "app", "appinstall", "appenv", "apprun", "applabels",
                      "appfiles", "apphelp", "apptest", "appstart"})
BOOTSTRAPS = frozenset({"docker", "library", "shub", "oras", "localimage", "debootstrap", "yum", "zypper",
                        "busybox", "scratch", "docker-daemon", "docker-archive", "arch"})


def check_definition(path: str | Path) -> dict[str, str]:
    """Parse `path`; return {"bootstrap": ..., "from": ..., "sections": "files,post,..."}.

    Raises AstrohpcError naming the file, the line and the fix for: a missing or unknown
    `Bootstrap:`, a missing `From:` where the bootstrap needs one, an unknown section name.
    """
    path = Path(path)
    if not path.is_file():
        raise AstrohpcError(f"{path}: Apptainer definition file not found")
    header: dict[str, str] = {}
    sections: list[str] = []
    in_header = True
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = re.match(r"^%(\w+)", line)
        if match:
            in_header = False
            name = match.group(1)
            if name not in SECTIONS:
                close = difflib.get_close_matches(name, SECTIONS, n=1)
                hint = f" (did you mean %{close[0]}?)" if close else ""
                raise AstrohpcError(f"{path}:{lineno}: unknown section %{name}{hint}; Apptainer would "
                                    "silently skip it")
            sections.append(name)
        elif in_header and ":" in line and not line.lstrip().startswith("#"):
            key, value = line.split(":", 1)
            header[key.strip().lower()] = value.strip()
    bootstrap = header.get("bootstrap")
    if bootstrap is None:
        raise AstrohpcError(f"{path}: no 'Bootstrap:' line in the header (e.g. 'Bootstrap: docker')")
    if bootstrap not in BOOTSTRAPS:
        raise AstrohpcError(f"{path}: unknown bootstrap agent {bootstrap!r}; one of {', '.join(sorted(BOOTSTRAPS))}")
    if bootstrap not in ("scratch",) and not header.get("from"):
        raise AstrohpcError(f"{path}: 'Bootstrap: {bootstrap}' needs a 'From:' line (e.g. From: debian:bookworm-slim)")
    return {"bootstrap": bootstrap, "from": header.get("from", ""), "sections": ",".join(sections)}
