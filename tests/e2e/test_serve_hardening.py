"""`openpex serve` as a real process, tried as a hostile client would from a raw socket and as
an operator would from the shell: malformed HTTP gets a short 400 and one quiet log line, no
answer names the software's version, the store is its owner's alone, and bad flags are refused
in one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from tests.support.server import ADMIN_PASSWORD


def raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def test_malformed_requests_get_a_400_and_one_quiet_log_line_not_a_traceback(servers):
    server = servers("--simulated-nodes", "1")
    for request in (b"GET /OpenPEX/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n",
                    b"GET /OpenPEX/health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
                    b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"):
        answer = raw(server.port, request)
        head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        assert head.split(" ")[1] == "400", head
        assert "Server: OpenPEX\r\n" in head + "\r\n" and "Python" not in head and "aiohttp" not in head, head
    assert server.request("GET", "/OpenPEX/health")[0] == 200, "the service goes on"
    log = server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert log.count("refused a malformed request from 127.0.0.1") == 3, log


def test_the_store_the_service_creates_is_readable_by_its_owner_only(servers, tmp_path):
    server = servers("--simulated-nodes", "1")
    alice = ("alice", "correct-horse-battery-9")
    assert server.request("POST", "/OpenPEX/users", {"username": "alice", "password": alice[1]})[0] == 201
    assert os.stat(tmp_path).st_mode & 0o777 == 0o700
    stored = [path for path in tmp_path.rglob("*") if not path.is_symlink()]
    assert {"events.db", "events.db-wal"} <= {path.name for path in stored}
    loose = [f"{path.name} {oct(path.stat().st_mode & 0o777)}" for path in stored if path.stat().st_mode & 0o077]
    assert loose == []
    log = server.log.read_text()
    assert alice[1] not in log and ADMIN_PASSWORD not in log, "passwords are never logged"


def test_bad_hardening_flags_are_refused_in_one_line(tmp_path):
    for flags, says in ((["--cors-origin", "evil.example"], "--cors-origin"),
                        (["--cors-origin", "https://ok.example/path"], "--cors-origin"),
                        (["--quota-open-offers", "-3"], "--quota-open-offers")):
        done = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path), *flags],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_configured_node_with_a_bad_name_stops_the_start_in_one_line_before_any_connection(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path), "--simulated-nodes", "0",
                           "--node", ".hidden=qemu+tcp://127.0.0.1:1/system"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot start: name:" in done.stderr and "cannot be reached" not in done.stderr, done.stderr
    twice = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path),
                            "--node", "a=qemu:///system", "--node", "b=qemu:///system"], capture_output=True, text=True,
                           timeout=60)
    assert twice.returncode == 2 and "given twice" in twice.stderr


def test_unusable_tls_files_stop_the_start_in_one_line(tmp_path):
    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    for flags, says in ((["--tls-cert", str(tmp_path / "missing.pem")], "--tls-cert/--tls-key cannot be used"),
                        (["--tls-cert", str(tmp_path / "not-a-cert.pem")], "--tls-cert/--tls-key cannot be used"),
                        (["--tls-key", str(tmp_path / "not-a-cert.pem")], "--tls-key needs --tls-cert")):
        done = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path / "data"),
                               "--simulated-nodes", "0", *flags], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len([line for line in done.stderr.splitlines() if "cannot start" in line]) == 1
