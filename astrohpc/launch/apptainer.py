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
# CUDA wheels download.pytorch.org publishes per torch release: 2.12 dropped cu128 (pytorch/pytorch#178665,
# #179072); 2.13's are cu126 and cu130 (counted in pytorch/FBGEMM#5976). Add a release when the pin moves.
TORCH_CUDA_BUILDS = {"2.11": ("cu126", "cu128", "cu130"), "2.12": ("cu126", "cu130"), "2.13": ("cu126", "cu130")}
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
    bodies = section_bodies(path)
    check_cache_location(path, bodies)
    check_torch_index(path, bodies)
    return {"bootstrap": bootstrap, "from": header.get("from", ""), "sections": ",".join(sections)}


def section_bodies(path: str | Path) -> dict[str, str]:
    """The text of each %section of a definition file (lines after its header line)."""
    bodies: dict[str, list[str]] = {}
    current = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = re.match(r"^%(\w+)", line)
        if match:
            current = match.group(1)
            bodies.setdefault(current, [])
        elif current is not None:
            bodies[current].append(line)
    return {name: "\n".join(lines) for name, lines in bodies.items()}


def exported(body: str, name: str) -> str | None:
    """The value `export NAME=value` gives in a shell section (the last one), unquoted; None if none."""
    values = re.findall(rf"^\s*export\s+(?:\w+=\S*\s+)*{name}=(\S+)", body, flags=re.MULTILINE)
    return values[-1].strip("'\"") if values else None


def check_cache_location(path: str | Path, bodies: dict[str, str]) -> None:
    """An image that compiles the GCM in %post must export the same ASTROHPC_CACHE in %post and
    %environment: the build lands in the build user's ~/.cache otherwise, where jobs never look."""
    post = bodies.get("post", "")
    if "gcm build" not in post:
        return
    at_build, at_run = exported(post, "ASTROHPC_CACHE"), exported(bodies.get("environment", ""), "ASTROHPC_CACHE")
    if at_build is None or at_build != at_run:
        raise AstrohpcError(f"{path}: %post compiles the GCM (astrohpc gcm build) with ASTROHPC_CACHE={at_build} but "
                            f"%environment sets ASTROHPC_CACHE={at_run}: jobs in the image would not find the build; "
                            "export the same path (inside the image, e.g. /opt/astrohpc/cache) in both sections")


def torch_pin_and_index(bodies: dict[str, str]) -> tuple[str | None, str | None]:
    """(the torch version %post installs, the CUDA build of its wheel index) - None where absent. The
    index is the %post's --index-url, or the %arguments default it names as {{ ARG }}."""
    post = bodies.get("post", "")
    version = re.search(r"torch==([0-9][0-9.]*)", post)
    index = re.search(r"--index-url\s+(?:\"([^\"]+)\"|(\S+))", post)
    url = (index.group(1) or index.group(2)) if index else None
    arg = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", url or "")
    if arg:
        default = re.search(rf"^\s*{arg.group(1)}=(\S+)", bodies.get("arguments", ""), flags=re.MULTILINE)
        url = default.group(1) if default else None
    build = re.search(r"/whl/(cu\d+|cpu|rocm[\d.]+)/?$", url or "")
    return (version.group(1) if version else None), (build.group(1) if build else None)


def check_torch_index(path: str | Path, bodies: dict[str, str]) -> None:
    """A torch pin from a wheel index that does not carry that release would fail the build an hour in."""
    version, build = torch_pin_and_index(bodies)
    if version is None or build is None or not build.startswith("cu"):
        return
    known = TORCH_CUDA_BUILDS.get(".".join(version.split(".")[:2]))
    if known is not None and build not in known:
        raise AstrohpcError(f"{path}: torch=={version} is installed from the {build} index, but torch "
                            f"{version.rsplit('.', 1)[0]} ships CUDA wheels for {', '.join(known)} only; "
                            f"use https://download.pytorch.org/whl/{known[0]} (older drivers) or {known[1]}")
