"""`import soket_transcribe` stays cheap (the optional libraries load only when a table is asked for)
and tells the one version number, the one in Cargo.toml."""

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import soket_transcribe as st

OPTIONAL = ("pandas", "pyarrow", "polars", "dask", "distributed", "ray", "duckdb", "tqdm", "numpy")


def optional_modules_loaded_by(code):
    """Runs `code` in a fresh interpreter; returns the optional libraries it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.splitlines()[-1])
    return sorted(set(loaded) & set(OPTIONAL))


def test_import_loads_no_optional_library():
    assert optional_modules_loaded_by("import soket_transcribe") == []


def test_reading_records_as_dicts_loads_no_optional_library():
    code = (
        "import soket_transcribe as st\n"
        "from soket_transcribe.testing import MockServer\n"
        "with MockServer(files=300) as srv:\n"
        "    assert len(list(st.Client(srv.token, srv.url).iter_files(srv.batch_id, limit=100))) == 300"
    )
    assert optional_modules_loaded_by(code) == []


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas is not installed")
def test_the_probe_sees_a_library_that_was_imported():
    assert "pandas" in optional_modules_loaded_by("import soket_transcribe, pandas")


def test_version_is_the_one_in_cargo_toml():
    cargo = (Path(__file__).parent.parent / "Cargo.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', cargo, re.M).group(1)
    assert st.__version__ == importlib.metadata.version("soket-transcribe") == version


def test_orjson_is_imported_with_the_package_not_in_the_middle_of_a_read():
    # A Ctrl-C inside orjson's import makes its next use segfault: it must never be the first
    # page's parse that imports it, where a user's Ctrl-C lands.
    probe = "import soket_transcribe, sys; print('orjson' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=60)
    assert out.stdout.strip() == "True", out.stderr
