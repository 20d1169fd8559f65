"""The type checker as a test: `mypy --strict` (pyproject's [tool.mypy]) passes on pex/, and a
call to an actor that names a command it does not have is caught by it, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_pex_passes_mypy_strict():
    checked = mypy()  # files, strictness and overrides from pyproject.toml
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Success: no issues found" in checked.stdout


def test_an_actor_call_to_a_command_that_does_not_exist_is_a_type_error(tmp_path):
    caller = tmp_path / "caller.py"
    caller.write_text(
        "import pykka\n"
        "from pex.actors.allocator import Allocator\n"
        "from pex.actors.calls import ask_sync\n"
        "from pex.actors.reservation_manager import ReservationManager\n"
        "def f(allocator: pykka.ActorRef[Allocator], manager: pykka.ActorRef[ReservationManager]) -> None:\n"
        "    ask_sync(allocator, lambda a: a.propose('alice'))\n"  # one argument short
        "    ask_sync(allocator, lambda a: a.app.read.reservationz('x', 'alice'))\n"  # a misspelt query
        "    ask_sync(manager, lambda m: m.settle(now=1))\n"  # an argument it does not take
    )
    checked = mypy("--strict", str(caller))
    assert checked.returncode == 1
    out = checked.stdout
    assert 'caller.py:6: error: Missing positional argument "proposal" in call to "propose" of "Allocator"' in out, out
    assert 'caller.py:7: error: "Reading" has no attribute "reservationz"' in out, out
    assert 'caller.py:8: error: Unexpected keyword argument "now" for "settle" of "ReservationManager"' in out, out
