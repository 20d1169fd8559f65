"""Simulated hosts: host files for libvirt's test driver, and their test:/// URIs.

A simulated host is an XML file that libvirt's built-in test driver reads on open(); the
LibvirtDriver then treats it like any other host. The test driver reads the host's size from
/node/cpu/{mhz,model,active,nodes,sockets,cores,threads} and /node/memory (KiB); getInfo()
gives those numbers back. Each connection to a file is an independent in-memory host and
nothing is written back to the file. Taking the file away makes the host answer nothing (the
LibvirtDriver checks it before each call) until it is put back: a lost host, for a running service.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

SIMULATED_MODEL = "OpenPEX simulated"  # the test driver rejects models of 32 bytes or more
SIMULATED_MHZ = 2000


def host_path(data_dir: Path, name: str) -> Path:
    """Where the host file of the simulated host `name` lives under data_dir."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a usable host name: {name!r}")
    return Path(data_dir) / "hosts" / f"{name}.xml"


def uri_for(path: Path) -> str:
    """The test:/// URI of a host file; the path is percent-quoted as libvirt's URI parser wants."""
    return "test://" + quote(str(Path(path).resolve()))


def simulated_uri(data_dir: Path, name: str) -> str:
    """The URI of the simulated host `name` under data_dir (see write_host to create it)."""
    return uri_for(host_path(data_dir, name))


def host_xml(name: str, cpus: int = 8, memory_mb: int = 16384) -> str:
    """The test driver's host description for a host of this size."""
    if cpus < 1 or memory_mb < 1:
        raise ValueError(f"a host needs at least one CPU and 1 MiB, got {cpus} CPUs, {memory_mb} MiB")
    # An XML comment may not contain "--"; the name is only there for people reading the file.
    label = escape(name).replace("--", "- -")
    return (
        f"<!-- OpenPEX simulated host {label} -->\n"
        "<node>\n"
        "  <cpu>\n"
        f"    <mhz>{SIMULATED_MHZ}</mhz>\n"
        f"    <model>{SIMULATED_MODEL}</model>\n"
        f"    <active>{cpus}</active>\n"
        "    <nodes>1</nodes>\n"
        "    <sockets>1</sockets>\n"
        f"    <cores>{cpus}</cores>\n"
        "    <threads>1</threads>\n"
        "  </cpu>\n"
        f"  <memory>{memory_mb * 1024}</memory>\n"
        "</node>\n"
    )


def write_host(path: Path, name: str, cpus: int = 8, memory_mb: int = 16384) -> str:
    """Write the host file (only if its content changed) and return its test:/// URI."""
    path = Path(path).resolve()
    content = host_xml(name, cpus, memory_mb)
    try:
        unchanged = path.read_text(encoding="utf-8") == content
    except FileNotFoundError:
        unchanged = False
    if not unchanged:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never opens a half-written host.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return uri_for(path)
