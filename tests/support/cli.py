"""What the tests of the `openpex` commands share: how a refusal looks."""

from __future__ import annotations

import subprocess


def refused_in_one_line(result: subprocess.CompletedProcess[str], program: str | None, *words: str,
                        status: int = 2) -> None:
    """The command refused: exit `status`, one line on stderr naming every one of `words`, no
    traceback; with a `program`, the line starts `program: ` and nothing was printed on stdout."""
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    if program is not None:
        assert result.stdout == ""
        assert lines[0].startswith(f"{program}: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
