"""What a type checker sees of the records: mypy checks tests/typing/check_types.py (the
`assert_type`s of `for` and `async for` over every read), as CI's own step does."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_infers_each_reads_record_type():
    command = [sys.executable, "-m", "mypy", "tests/typing", "--config-file", "pyproject.toml"]
    checked = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues found in 1 source file" in checked.stdout
