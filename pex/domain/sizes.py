"""Instance sizes (the paper's Table 1) and the resource vectors capacity is counted in."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True, slots=True)
class Resources:
    """An amount of the three resources admission checks: CPUs, memory (MB), disk (GB)."""

    cpus: int
    memory_mb: int
    disk_gb: int

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus + other.cpus, self.memory_mb + other.memory_mb, self.disk_gb + other.disk_gb
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpus - other.cpus, self.memory_mb - other.memory_mb, self.disk_gb - other.disk_gb
        )

    def __mul__(self, count: int) -> Resources:
        return Resources(self.cpus * count, self.memory_mb * count, self.disk_gb * count)

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.cpus, self.memory_mb, self.disk_gb)

    def fits_in(self, free: Resources) -> bool:
        return (
            self.cpus <= free.cpus and self.memory_mb <= free.memory_mb and self.disk_gb <= free.disk_gb
        )

    def how_many_fit_in(self, free: Resources) -> int:
        """How many instances of this size fit in `free` (0 if any resource is short)."""
        return max(
            0, min(free.cpus // self.cpus, free.memory_mb // self.memory_mb, free.disk_gb // self.disk_gb)
        )


# A host's size when nobody says otherwise (libvirt never reports disk; an unreachable host
# reports nothing): `--node-spec`'s default.
DEFAULT_NODE = Resources(cpus=8, memory_mb=16384, disk_gb=200)


class InstanceType(Enum):
    """The standard VM configurations users choose from (paper, Table 1)."""

    SMALL = Resources(cpus=1, memory_mb=768, disk_gb=10)
    MEDIUM = Resources(cpus=2, memory_mb=1536, disk_gb=20)
    LARGE = Resources(cpus=3, memory_mb=2560, disk_gb=40)
    XLARGE = Resources(cpus=4, memory_mb=3584, disk_gb=60)

    @property
    def resources(self) -> Resources:
        return self.value

    @classmethod
    def named(cls, name: str) -> InstanceType | None:
        """The type called `name`, or None: an unknown type is a REJECT reason, not a crash."""
        return cls.__members__.get(name)
