"""A libvirtd serving qemu:///system for the test session, set up as SETUP-NOTES.md says.

There is no systemd here, so the daemon is started by hand. Before starting it, `ensure()`:

- creates the system group and user `libvirt-qemu` (the QEMU driver looks them up on start);
- creates /var/log/libvirt;
- writes OpenPEX's block into /etc/libvirt/qemu.conf (QEMU runs as root, no ownership changes,
  no security driver, the serial/stdio of QEMU go to files because there is no virtlogd). Only the
  lines between the block's own BEGIN/END markers are ours; re-running rewrites that block in place.

If a daemon already answers on qemu:///system it is used as it is (unless our qemu.conf block
just changed under a daemon we started, which is then restarted so it reads it). Otherwise
`libvirtd --daemon` is started and awaited: its first start probes QEMU for about 8 s, so up to
60 s are allowed; on failure the error carries the tail of the daemon's log.

The daemon is left running when the session ends, whoever started it: it is a machine-wide
service, another test session (or a person) may be using it at the same time, and the next
session then starts instantly. Nothing else keeps running: every test undefines its domains.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import libvirt

# libvirt prints every error to stderr by default; the errors are reported through exceptions.
libvirt.registerErrorHandler(lambda *_: None, None)

URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
LOG_DIR = Path("/var/log/libvirt")
LOG_FILE = LOG_DIR / "openpex-libvirtd.log"
PID_FILE = Path("/run/openpex-libvirtd.pid")
LOCK_FILE = Path("/run/openpex-libvirtd.lock")  # two test sessions starting at once take turns
START_TIMEOUT = 60.0

BEGIN = "# BEGIN openpex: managed by tests/support/libvirtd.py (rewritten by the tests; do not edit)"
END = "# END openpex"
SETTINGS = {
    "user": '"root"',
    "group": '"root"',
    "dynamic_ownership": "0",
    "security_driver": '"none"',
    "stdio_handler": '"file"',
}


class LibvirtdError(RuntimeError):
    """libvirtd could not be made to serve qemu:///system; the message says why."""


def answers(uri: str = URI) -> bool:
    """True if a daemon accepts a connection to uri and reports QEMU's version.

    Asking for the hypervisor's version (not just libvirt's) waits for the daemon's QEMU probe,
    which the first start after installing or upgrading QEMU spends about 8 s on.
    """
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return False
    try:
        conn.getVersion()
        return True
    except libvirt.libvirtError:
        return False
    finally:
        conn.close()


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LibvirtdError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")


def ensure_qemu_user() -> None:
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        _run("groupadd", "--system", "libvirt-qemu")
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        _run("useradd", "--system", "--gid", "libvirt-qemu", "--no-create-home",
             "--home-dir", "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu")


def managed_block() -> str:
    lines = [BEGIN, *(f"{key} = {value}" for key, value in SETTINGS.items()), END]
    return "\n".join(lines) + "\n"


def configure_qemu(path: Path = QEMU_CONF) -> bool:
    """Write our block into qemu.conf; True if the file changed.

    Refuses (LibvirtdError) if a line outside the block sets one of our keys differently, since
    libvirt would then not do what the tests need and silently fighting it helps nobody.
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = ""
    outside: list[str] = []
    kept: list[str] = []
    inside = False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped == BEGIN:
            inside = True
            continue
        if inside:
            if stripped == END:
                inside = False
            continue
        kept.append(line)
        key, sep, value = stripped.partition("=")
        if sep and not stripped.startswith("#") and key.strip() in SETTINGS:
            if value.strip() != SETTINGS[key.strip()]:
                outside.append(stripped)
    if outside:
        raise LibvirtdError(
            f"{path} sets {', '.join(outside)} outside OpenPEX's block; the tests need "
            + ", ".join(f"{k} = {v}" for k, v in SETTINGS.items())
        )
    body = "".join(kept)
    if body and not body.endswith("\n"):
        body += "\n"
    new = body + managed_block()
    if new == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.openpex.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True


def _alive(pid: int) -> bool:
    """True if pid is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _our_daemon_pid() -> int | None:
    """The pid of a libvirtd we started (from our pid file), if it is still alive."""
    try:
        pid = int(PID_FILE.read_text().strip())
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if comm == "libvirtd" and _alive(pid) else None


def _log_tail(lines: int = 40) -> str:
    try:
        return f"{LOG_FILE}:\n" + "\n".join(LOG_FILE.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no daemon log at {LOG_FILE})"


class Libvirtd:
    """Makes sure a libvirtd answers on qemu:///system (see the module docstring)."""

    def __init__(self, uri: str = URI, timeout: float = START_TIMEOUT) -> None:
        self.uri = uri
        self.timeout = timeout
        self.started = False  # whether this object started the daemon

    def ensure(self) -> str:
        """Set up and start the daemon as needed; returns the URI to connect to."""
        if os.geteuid() != 0:
            raise LibvirtdError(f"the tests need root to run libvirtd for {self.uri} (running as uid {os.geteuid()})")
        with LOCK_FILE.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._ensure()

    def _ensure(self) -> str:
        ensure_qemu_user()
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        changed = configure_qemu()
        if answers(self.uri):
            if not changed:
                return self.uri
            pid = _our_daemon_pid()
            if pid is None:
                raise LibvirtdError(
                    f"{QEMU_CONF} was just changed but the libvirtd answering on {self.uri} was not "
                    "started by the tests; restart it so it reads the new settings"
                )
            self._stop(pid)
        self._start()
        return self.uri

    def _stop(self, pid: int) -> None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        raise LibvirtdError(f"libvirtd (pid {pid}) did not stop within 30 s after SIGTERM")

    def _start(self) -> None:
        binary = "/usr/sbin/libvirtd"
        if not os.access(binary, os.X_OK):
            raise LibvirtdError(f"{binary} is missing: run ./scripts/setup.sh (it installs libvirt-daemon)")
        env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{LOG_FILE}")
        with LOG_FILE.open("a") as log:
            log.write(f"--- openpex: starting libvirtd at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        # --daemon returns once the daemon has forked and initialised; it is not ours to wait on.
        result = subprocess.run([binary, "--daemon", f"--pid-file={PID_FILE}"], env=env,
                                capture_output=True, text=True, timeout=self.timeout)
        if result.returncode != 0:
            raise LibvirtdError(
                f"libvirtd --daemon failed ({result.returncode}): {result.stderr.strip()}\n{_log_tail()}"
            )
        self.started = True
        deadline = time.monotonic() + self.timeout
        while not answers(self.uri):
            if _our_daemon_pid() is None:
                raise LibvirtdError(f"libvirtd exited before answering on {self.uri}\n{_log_tail()}")
            if time.monotonic() >= deadline:
                raise LibvirtdError(f"libvirtd did not answer on {self.uri} within {self.timeout:.0f} s\n{_log_tail()}")
            time.sleep(0.2)
