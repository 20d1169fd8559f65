"""Files on this machine that an admin's input may name, and only those: a template's kernel
and initrd must be regular files inside the image directory, and a simulated host (a test://
URI) an XML file inside the hosts directory. A path elsewhere, a symlink that leads out, or
anything but a file is refused before it is read, so the API cannot be used to make the
hypervisor (or libvirt's error messages in the log) read /etc/shadow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pex.domain.errors import InvalidField


@dataclass(frozen=True)
class LocalFiles:
    images: Path  # where template files may be
    hosts: Path  # where simulated hosts' XML files may be

    def image(self, field: str, value: str) -> str:
        """The absolute path of the image file `value` names (absolute, or relative to the
        image directory), or InvalidField."""
        return str(_inside(self.images, Path(value), field, "the image directory"))

    def host_uri(self, uri: str) -> str:
        """The URI as it is to be stored: a test:// URI must name a host file in the hosts
        directory (or libvirt's shared test:///default), and is given with that file's real
        path, so two names for one file are one host; other drivers name no local file."""
        parts = urlsplit(uri)
        if parts.scheme != "test" or parts.path in ("/default", ""):
            return uri
        path = _inside(self.hosts, Path(unquote(parts.path)), "uri", "the hosts directory")
        if path.suffix != ".xml":
            raise InvalidField("uri", "a simulated host is an .xml file")
        return f"test://{path}"


def _inside(root: Path, path: Path, field: str, what: str) -> Path:
    base = root.resolve()
    missing = InvalidField(field, f"there is no file {path.name[:64]!r} in {what} ({base})")
    try:
        resolved = (base / path).resolve()  # follows symlinks: one that leads out is caught below
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL in it
        raise missing from None
    if not resolved.is_relative_to(base):
        raise InvalidField(field, f"must be a file in {what} ({base})")
    try:
        is_file = resolved.is_file()
    except (OSError, ValueError):
        is_file = False
    if not is_file:
        raise missing
    return resolved
