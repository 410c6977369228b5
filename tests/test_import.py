"""`import soket_transcribe` stays cheap: the optional libraries load only when a table is asked for."""

import importlib.util
import json
import subprocess
import sys

import pytest

OPTIONAL = ("pandas", "pyarrow", "polars", "dask", "distributed", "ray", "duckdb", "tqdm", "numpy")


def optional_modules_loaded_by(code):
    """Runs `code` in a fresh interpreter; returns the optional libraries it left in sys.modules."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, encoding="utf-8", timeout=60, check=True)
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
