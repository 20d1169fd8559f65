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

    def check_uri(self, uri: str) -> None:
        """A test:// URI must name a host file in the hosts directory (or libvirt's shared
        test:///default); other drivers name no local file."""
        parts = urlsplit(uri)
        if parts.scheme != "test" or parts.path in ("/default", ""):
            return
        path = _inside(self.hosts, Path(unquote(parts.path)), "uri", "the hosts directory")
        if path.suffix != ".xml":
            raise InvalidField("uri", "a simulated host is an .xml file")


def _inside(root: Path, path: Path, field: str, what: str) -> Path:
    base = root.resolve()
    resolved = (base / path).resolve()  # follows symlinks: one that leads out is caught below
    if not resolved.is_relative_to(base):
        raise InvalidField(field, f"must be a file in {what} ({base})")
    if not resolved.is_file():
        raise InvalidField(field, f"there is no file {path.name!r} in {what} ({base})")
    return resolved
