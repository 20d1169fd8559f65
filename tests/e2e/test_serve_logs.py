"""`openpex serve --log-format json`: every line on stderr is one JSON object (time, level,
logger, message, and what the line is about), aiohttp's own lines included; the default stays
text; a format it does not know is refused in one line."""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from pex.logs import JSONFormatter, about
from tests.support.server import ADMIN_PASSWORD, Server, rfc1123

ALICE = ("alice", "correct-horse-battery-9")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def start_and_cancel_a_reservation(server: Server) -> str:
    """Alice's reservation starts two seconds from now (its VM boots), then she cancels it."""
    assert server.request("POST", "/OpenPEX/users", {"username": ALICE[0], "password": ALICE[1]})[0] == 201
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=2)
    status, answer = server.request("POST", "/OpenPEX/reservations", {
        "duration": 60_000, "numInstancesFixed": 1, "startTime": rfc1123(start), "template": "debian-12",
        "type": "SMALL"}, auth=ALICE)
    assert status == 201 and answer["reply"] == "ACCEPT", answer
    rid: str = answer["proposal"]["id"]
    assert server.request("PUT", f"/OpenPEX/reservations/{rid}", {"reply": "CONFIRM"}, auth=ALICE)[0] == 200
    assert server.request("PUT", f"/OpenPEX/reservations/{rid}/activate", auth=ALICE)[0] == 200
    while (instances := server.request("GET", "/OpenPEX/instances", auth=ALICE)[1])[0]["status"] != "RUNNING":
        assert datetime.now(timezone.utc) < start + timedelta(seconds=5), instances
        time.sleep(0.05)
    assert server.request("DELETE", f"/OpenPEX/reservations/{rid}", auth=ALICE)[0] == 200
    return rid


def malformed_request(port: int) -> None:
    """A NUL in a header: aiohttp itself logs it (aiohttp.server)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /OpenPEX/health HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n")
        while connection.recv(65536):
            pass


def test_with_json_every_log_line_is_an_object_and_lines_about_a_reservation_carry_its_id(tmp_path):
    server = Server(tmp_path, "--simulated-nodes", "1", "--log-format", "json", split_stderr=True)
    try:
        rid = start_and_cancel_a_reservation(server)
        malformed_request(server.port)
        assert server.kill(signal.SIGTERM) == 0
    finally:
        server.close()

    text = server.stderr.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line, or this fails
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines), text
    assert all(TIME.fullmatch(line["time"]) for line in lines), text
    about_it = [line for line in lines if line.get("reservation") == rid]
    assert any(line["message"] == f"reservation {rid}: boot 1 VMs on sim01" and line["node"] == "sim01"
               and line["logger"] == "pex.actors.allocator" and line["level"] == "INFO" for line in about_it), text
    assert any(line["message"].startswith(f"reservation {rid} cancelled by alice") and line["user"] == "alice"
               for line in about_it), text
    assert any(line["logger"] == "aiohttp.server" and "malformed" in line["message"] for line in lines), text
    assert ALICE[1] not in text and ADMIN_PASSWORD not in text
    assert "openpex: serving" in server.log.read_text()  # what is printed stays on stdout


def test_the_default_log_format_is_text(tmp_path):
    server = Server(tmp_path, "--simulated-nodes", "1", split_stderr=True)
    try:
        malformed_request(server.port)
        assert server.kill(signal.SIGTERM) == 0
    finally:
        server.close()
    lines = server.stderr.read_text().splitlines()
    assert any(" INFO aiohttp.server: refused a malformed request" in line for line in lines), lines
    assert not any(line.startswith("{") for line in lines), lines


def test_an_unknown_log_format_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pex.cli", "serve", "--data-dir", str(tmp_path), "--log-format", "xml"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result
    assert result.stderr.splitlines()[-1] == ("openpex serve: error: argument --log-format: invalid choice: 'xml' "
                                              "(choose from 'text', 'json')"), result.stderr


def test_a_traceback_is_one_field_of_one_line():
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError as error:
        record = logging.LogRecord("aiohttp.web", logging.ERROR, __file__, 1, "Error handling request %s", ("/x",),
                                   (type(error), error, error.__traceback__))
    record.__dict__.update(about(reservation="r-1", vm="", user="alice"))
    line = JSONFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "Error handling request /x" and parsed["reservation"] == "r-1"
    assert parsed["user"] == "alice" and "vm" not in parsed
    assert parsed["exc"].startswith("Traceback (most recent call last):") and "ZeroDivisionError" in parsed["exc"]
