"""libvirt test-driver hosts that outlive a Service, as real hosts outlive openpex, and that a
test can make unreachable or refuse an operation."""

from __future__ import annotations

from pex.drivers.base import DriverError, NodeUnreachable
from pex.drivers.libvirt import LibvirtDriver


class Hosts:
    """One real test-driver connection per URI for the whole test, shared by every Service
    started in it. A host named in `unreachable` refuses connections and every call."""

    def __init__(self) -> None:
        self.drivers: dict[str, LibvirtDriver] = {}
        self.unreachable: set[str] = set()
        self.failing_undefine = 0

    def connect(self, uri: str) -> LibvirtDriver:
        if self._down(uri):
            raise NodeUnreachable(f"cannot connect to {uri}")
        if uri not in self.drivers:
            hosts = self

            class Shared(LibvirtDriver):
                def close(self) -> None:  # the host lives on after the service stops
                    pass

                def _connection(self):  # every call goes through here
                    if hosts._down(self.uri):
                        raise NodeUnreachable(f"{self.uri} does not answer")
                    return super()._connection()

                def undefine(self, name: str) -> None:
                    if hosts.failing_undefine:
                        hosts.failing_undefine -= 1
                        raise DriverError("the host refused to undefine the VM")
                    super().undefine(name)

            self.drivers[uri] = Shared(uri)
        return self.drivers[uri]

    def _down(self, uri: str) -> bool:
        return any(uri.endswith(f"/{name}.xml") for name in self.unreachable)

    def host(self, name: str) -> LibvirtDriver:
        return next(d for uri, d in self.drivers.items() if uri.endswith(f"/{name}.xml"))

    def domains(self) -> dict[str, str]:
        return {name: state.value for uri, d in self.drivers.items() if not self._down(uri)
                for name, state in d.domains().items()}

    def close(self) -> None:
        for driver in self.drivers.values():
            LibvirtDriver.close(driver)
