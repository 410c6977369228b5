"""The `soket-transcribe` command as a user runs it: a subprocess against the embedded mock."""

import csv
import fcntl
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import termios
import time

import pytest

import soket_transcribe as st
from soket_transcribe.testing import MockServer
from requests_log import pages_asked


def cli_env(server=None, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOKET_")}
    if server is not None:
        env.update(SOKET_API_TOKEN=server.token, SOKET_BASE_URL=server.url)
    env.update(extra)
    return env


def run(*args, server=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "soket_transcribe", *args],
        capture_output=True,
        encoding="utf-8",
        env=env if env is not None else cli_env(server),
        timeout=60,
    )


def run_limited(blocks, *args, server=None, cwd=None):
    """The CLI with its file size limit at `blocks` of 1,024 bytes (bash's unit): writes past it fail (EFBIG)."""
    return subprocess.run(
        ["bash", "-c", f'ulimit -f {blocks} && exec "$0" "$@"', sys.executable, "-m", "soket_transcribe", *args],
        capture_output=True,
        encoding="utf-8",
        env=cli_env(server),
        cwd=cwd,
        timeout=60,
    )


def start(*args, server=None, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "soket_transcribe", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        env=cli_env(server),
        **popen,
    )


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


# -- formats -------------------------------------------------------------------------------


def test_jsonl_on_stdout_reads_back_to_the_records(server, client):
    out = run("results", server.batch_id, server=server)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # not a TTY: no progress bar
    assert jsonl(out.stdout) == list(client.iter_files(server.batch_id))
    assert len(out.stdout.splitlines()) == 1234


def test_jsonl_keeps_unicode_as_is(server):
    out = run("results", server.batch_id, "--max-items", "300", server=server)
    assert "\\u" not in out.stdout
    assert any(not line.isascii() for line in out.stdout.splitlines())


def test_raw_jobs_with_chunks_and_speech_to_a_file(server, client, tmp_path):
    path = tmp_path / "jobs.jsonl"
    args = ("results", server.batch_id, "--raw", "--chunks", "--speech-information", "--status", "completed", "-o", str(path))
    out = run(*args, server=server)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    expected = client.iter_jobs(server.batch_id, status="completed", chunks=True, speech_information=True)
    assert jsonl(path.read_text(encoding="utf-8")) == list(expected)


def test_query_options_reach_the_service(server):
    out = run("results", server.batch_id, "--limit", "50", "--start-page", "3", "--max-items", "120", server=server)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 120
    queries = [r["query"] for r in server.requests if "/results/batch/" in r["path"]]
    assert "page=3" in queries[0] and "limit=50" in queries[0]


def test_json_is_one_array(server, client):
    out = run("results", server.batch_id, "--format", "json", server=server)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == list(client.iter_files(server.batch_id))


def test_json_of_an_empty_selection_is_an_empty_array(tmp_path):
    with MockServer(10, statuses={"completed": 1.0}) as server:
        out = run("results", server.batch_id, "--status", "failed", "--format", "json", server=server)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def test_csv_has_flat_columns(server, client, tmp_path):
    path = tmp_path / "files.csv"
    out = run("results", server.batch_id, "--format", "csv", "-o", str(path), server=server)
    assert out.returncode == 0, out.stderr
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    records = list(client.iter_files(server.batch_id))
    assert [r["file_id"] for r in rows] == [r["file_id"] for r in records]
    assert [r["filename"] for r in rows] == [r["filename"] for r in records]
    assert [r["result.text"] for r in rows] == [(r.get("result") or {}).get("text", "") for r in records]
    failed = next(i for i, r in enumerate(records) if r["status"] == "failed")
    assert json.loads(rows[failed]["errors"]) == records[failed]["errors"]



def test_csv_takes_in_fields_that_appear_on_later_pages(server, client, tmp_path):
    path = tmp_path / "files.csv"
    out = run("results", server.batch_id, "--limit", "10", "--format", "csv", "-o", str(path), server=server)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == [path]
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    records = list(client.iter_files(server.batch_id))
    seen = {f"metadata.{key}" for r in records for key, value in r["metadata"].items() if value is not None}
    assert seen <= set(rows[0])
    for column in seen:
        key = column.split(".")[1]
        assert [bool(row[column]) for row in rows] == [r["metadata"].get(key) is not None for r in records]


def test_csv_resume_appends_under_the_same_header(server, client, tmp_path):
    path = tmp_path / "files.csv"
    first = run("results", server.batch_id, "--limit", "100", "--max-items", "300", "--format", "csv", "-o", str(path), server=server)
    rest = run("results", server.batch_id, "--limit", "100", "--start-page", "4", "--format", "csv", "-o", str(path), server=server)
    assert first.returncode == rest.returncode == 0, first.stderr + rest.stderr
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["file_id"] for r in rows] == [r["file_id"] for r in client.iter_files(server.batch_id)]

@pytest.mark.parametrize(
    "options, query",
    [
        ((), {}),
        (("--chunks", "--speech-information"), dict(chunks=True, speech_information=True)),
        (("--status", "failed"), dict(status="failed")),
        (("--raw",), dict(raw=True)),
    ],
)
def test_parquet_reads_back_to_the_records(server, client, tmp_path, options, query):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "files.parquet"
    out = run("results", server.batch_id, "--limit", "100", *options, "--format", "parquet", "-o", str(path), server=server)
    assert out.returncode == 0, out.stderr
    assert list(tmp_path.iterdir()) == [path]
    rows = pq.read_table(path).to_pylist()
    query.pop("raw", False)
    fetch = client.iter_jobs if "--raw" in options else client.iter_files
    records = list(fetch(server.batch_id, **query))
    assert len(rows) == len(records)
    for column in ("file_id", "filename", "status"):
        assert [r[column] for r in rows] == [r[column] for r in records]
    table = client.iter_jobs if "--raw" in options else client.iter_files
    assert pq.read_table(path).equals(table(server.batch_id, limit=100, **query).to_arrow())
    assert [(r.get("result") or {}).get("text") for r in rows] == [(r.get("result") or {}).get("text") for r in records]


def test_parquet_of_an_empty_selection_is_an_empty_file(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "none.parquet"
    with MockServer(10, statuses={"completed": 1.0}) as server:
        out = run("results", server.batch_id, "--status", "failed", "--format", "parquet", "-o", str(path), server=server)
    assert out.returncode == 0, out.stderr
    assert pq.read_table(path).num_rows == 0



def stderr_on_a_terminal(*args, server, tqdm=True, tmp_path=None):
    """Runs the CLI with stderr on an 80-column pseudo-terminal (without tqdm: made unimportable
    through a `tqdm.py` in `tmp_path` that raises ImportError); returns what it showed there."""
    pty = pytest.importorskip("pty")
    extra = {}
    if not tqdm:
        (tmp_path / "tqdm.py").write_text("raise ImportError('tqdm hidden by the test')\n")
        extra["PYTHONPATH"] = str(tmp_path)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # tqdm draws nothing at 0 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "soket_transcribe", *args],
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=cli_env(server, **extra),
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        shown += data
    os.close(controller)
    assert proc.wait(timeout=30) == 0
    return shown.decode()


def test_progress_bar_on_a_terminal(server, tmp_path):
    shown = stderr_on_a_terminal("results", server.batch_id, "--limit", "100", server=server, tqdm=False, tmp_path=tmp_path)
    last = shown.rstrip().split("\r")[-1]
    assert last.startswith("1,234/1,234 files [" + "#" * 24 + "] 100%") and "files/s" in last


def test_progress_bar_through_tqdm_on_a_terminal(server):
    shown = stderr_on_a_terminal("results", server.batch_id, "--limit", "100", server=server)
    last = shown.rstrip().split("\r")[-1]
    assert last.startswith("soket-transcribe: 1,234/1,234 files |") and "100%" in last and "files/s" in last


def test_no_progress_silences_the_bar(server):
    assert stderr_on_a_terminal("results", server.batch_id, "--no-progress", server=server) == ""


# -- errors and exit codes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "error: the following arguments are required: COMMAND"),
        (("results",), "error: the following arguments are required: BATCH_ID"),
        (("results", "b1", "--format", "csv"), "error: --format csv writes a file: give it -o PATH (not stdout)"),
        (("results", "b1", "--format", "parquet", "-o", "-"), "error: --format parquet writes a file: give it -o PATH"),
        (("results", "b1", "--format", "xml"), "argument --format: invalid choice: 'xml'"),
        (("results", "b1", "--status", "done"), "argument --status: invalid choice: 'done'"),
        (("results", "b1", "--limit", "ten"), "argument --limit: invalid int value: 'ten'"),
        (("results", "b1", "--limit", "0"), "error: limit must be between 1 and 200; got 0"),
        (("results", "b1", "--start-page", "0"), "error: start_page must be >= 1; got 0"),
        (("results", "b1", "--concurrency", "0"), "error: concurrency must be between 1 and 64; got 0"),
        (("results", "b1", "--base-url", "http://example.com/transcribe"), "uses plain http to a non-loopback host"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(server, args, message):
    out = run(*args, server=server)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert message in out.stderr.splitlines()[-1]


def test_no_token_exits_2_and_says_where_to_put_one(server):
    out = run("results", server.batch_id, env=cli_env(SOKET_BASE_URL=server.url))
    assert out.returncode == 2
    assert out.stderr == "error: no API token: set SOKET_API_TOKEN or pass --token\n"


def test_wrong_token_exits_1_with_one_line_and_never_shows_a_token(server):
    secret = "sk-wrong-0123456789abcdef"
    out = run("results", server.batch_id, "--token", secret, server=server)
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "resume" not in out.stderr  # nothing was fetched: nothing to resume
    assert secret not in out.stderr + out.stdout
    assert server.token not in out.stderr + out.stdout


def test_unknown_batch_exits_1(server):
    out = run("results", "no-such-batch", server=server)
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "not found" in out.stderr


def test_faults_mid_way_exit_1_and_tell_where_to_resume(server, client):
    server.fail_next("stall", stall_s=0)  # page 1 answers
    server.fail_next("status", 4, status=503)  # page 2 fails, then its 3 retries
    out = run("results", server.batch_id, "--limit", "100", "--concurrency", "1", server=server)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    error, hint = out.stderr.splitlines()
    assert error.startswith("error: ") and "503" in error
    assert hint == "resume with --start-page 2"
    assert len(out.stdout.splitlines()) == 100

    rest = run("results", server.batch_id, "--limit", "100", "--start-page", "2", server=server)
    assert rest.returncode == 0, rest.stderr
    assert jsonl(out.stdout + rest.stdout) == list(client.iter_files(server.batch_id))


def test_resume_continues_the_pages_kept_and_completes_the_file(server, client, tmp_path):
    path = tmp_path / "files.jsonl"
    server.fail_next("stall", stall_s=0)
    server.fail_next("status", 4, status=503)
    first = run("results", server.batch_id, "--limit", "100", "--concurrency", "1", "-o", str(path), server=server)
    assert first.returncode == 1
    assert first.stderr.splitlines()[1:] == [
        f"pages before 2 are kept in {path}.partial; {path} was not written",
        f"resume with --start-page 2 (it continues {path}.partial)",
    ]
    assert not path.exists() and len(jsonl((tmp_path / "files.jsonl.partial").read_text(encoding="utf-8"))) == 100
    rest = run("results", server.batch_id, "--limit", "100", "--start-page", "2", "-o", str(path), server=server)
    assert rest.returncode == 0, rest.stderr
    assert jsonl(path.read_text(encoding="utf-8")) == list(client.iter_files(server.batch_id))
    assert list(tmp_path.iterdir()) == [path]


def test_a_batch_that_changes_while_read_is_exported_whole_with_a_warning(server):
    batch_id = server.add_batch(500, grow_per_request=7)
    out = run("results", batch_id, "--limit", "100", server=server)
    assert out.returncode == 0, out.stderr
    ids = [json.loads(line)["file_id"] for line in out.stdout.splitlines()]
    assert len(ids) == len(set(ids)) >= 500, "the 500 files of the start, each once (files added may appear too)"
    warnings = out.stderr.splitlines()
    assert warnings and all(line.startswith("warning: the batch changed while it was read") for line in warnings)


def test_ctrl_c_exits_130_and_tells_where_to_resume():
    with MockServer(2000, latency_ms=300) as server:
        proc = start("results", server.batch_id, "--limit", "100", "--concurrency", "1", server=server)
        proc.stdout.readline()  # page 1 is out
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.startswith("interrupted\nresume with --start-page ")


def test_a_closed_pipe_exits_quietly():
    with MockServer(5000) as server:
        with start("results", server.batch_id, server=server) as proc:
            proc.stdout.readline()
            proc.stdout.close()
            stderr = proc.stderr.read()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert stderr == ""


# -- mock-server and demo ------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mock_server_prints_how_to_use_it_and_stops_on_ctrl_c():
    port = free_port()
    proc = start("mock-server", "--port", str(port), "--files", "300", "--seed", "3", "--token", "tok-3")
    try:
        lines = []
        while not lines or lines[-1] != "Ctrl-C to stop.":
            lines.append(proc.stdout.readline().rstrip("\n"))
            assert lines[-1] or proc.poll() is None, proc.stderr.read()
        text = "\n".join(lines)
        url = f"http://127.0.0.1:{port}/transcribe"
        assert f"export SOKET_BASE_URL={url}" in text
        assert "export SOKET_API_TOKEN=tok-3" in text
        batch_id = next(line.split()[-1] for line in lines if line.strip().startswith("batch id"))
        assert len(list(st.Client("tok-3", url).iter_files(batch_id))) == 300
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_mock_server_on_a_busy_port_exits_1():
    with MockServer(1) as server:
        out = run("mock-server", "--port", str(server.port))
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr


def test_demo_summarises_a_batch():
    began = time.perf_counter()
    out = run("demo", "--files", "2000")
    assert out.returncode == 0, out.stderr
    assert time.perf_counter() - began < 30
    assert "2,000 files in" in out.stdout
    assert "Files by status" in out.stdout and "completed" in out.stdout and "failed" in out.stdout
    assert "Total audio:" in out.stdout
    assert "A few transcripts" in out.stdout



# -- subtitles -----------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["srt", "vtt"])
def test_subtitles_writes_a_file_per_completed_file(server, client, tmp_path, format):
    out = run("subtitles", server.batch_id, "-o", str(tmp_path / "subs"), "--format", format, server=server)
    assert out.returncode == 0, out.stderr
    completed = list(client.iter_files(server.batch_id, status="completed", speech_information=True))
    written = sorted((tmp_path / "subs").iterdir())
    assert len(written) == len(completed) and all(p.suffix == "." + format for p in written)
    assert out.stderr == f"{len(completed):,} {format} files written to {tmp_path / 'subs'}\n"
    first = tmp_path / "subs" / st.subtitles.safe_filename(completed[0]["filename"], "." + format)
    assert first.read_text(encoding="utf-8") == (st.to_srt if format == "srt" else st.to_vtt)(completed[0])


def test_subtitles_skips_a_record_without_segments_and_says_so(scripted_server, tmp_path):
    segment = {"start": 0.0, "end": 1.5, "text": "hello", "speaker_id": "S1"}
    files = [
        {"file_id": "f1", "filename": "a.wav", "status": "completed", "result": {"text": "hello", "segments": [segment]}},
        {"file_id": "f2", "filename": "b.wav", "status": "completed", "result": {"text": "no segments"}},
    ]
    page = {"batch_id": "b1", "page": 1, "limit": 200, "total_pages": 1, "total_files": 2, "count": 2, "files": files}
    url = scripted_server(lambda query: json.dumps(page).encode())
    out = run("subtitles", "b1", "-o", str(tmp_path / "subs"), env={"SOKET_API_TOKEN": "t", "SOKET_BASE_URL": url})
    assert out.returncode == 0, out.stderr
    assert [p.name for p in (tmp_path / "subs").iterdir()] == ["a.srt"]
    lines = out.stderr.splitlines()
    assert lines[0] == f"1 srt files written to {tmp_path / 'subs'}"
    assert lines[1].startswith("1 completed files skipped: f2: ")
    assert "Warning" not in out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("subtitles", "b1"), "error: the following arguments are required: -o/--output"),
        (("subtitles", "b1", "-o", "x", "--format", "ass"), "argument --format: invalid choice: 'ass'"),
    ],
)
def test_subtitles_bad_arguments_exit_2(server, args, message):
    out = run(*args, server=server)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert message in out.stderr.splitlines()[-1]


# -- status and wait -----------------------------------------------------------------------


def test_status_shows_the_progress_of_a_batch(server, client):
    out = run("status", server.batch_id, server=server)
    assert out.returncode == 0, out.stderr
    status = client.status(server.batch_id)
    lines = out.stdout.splitlines()
    assert lines[0] == f"batch     {server.batch_id}"
    assert lines[1] == "status    processing"
    assert lines[2] == (
        f"files     {status.files_done:,} of 1,234 done ({status.files_completed:,} completed, {status.files_failed:,} failed)"
    )
    assert lines[3].startswith("audio     ") and lines[4].startswith("left      ")
    as_json = run("status", server.batch_id, "--json", server=server)
    assert json.loads(as_json.stdout) == status.to_dict()


def test_status_of_a_missing_batch_exits_1(server):
    out = run("status", "no-such-batch", server=server)
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "batch not found" in out.stderr


def test_wait_exits_0_once_the_batch_is_done(server):
    batch_id = server.add_batch(20, statuses={"processing": 1.0}, processing_seconds=0.5)
    out = run("wait", batch_id, "--poll-interval", "0.1", "--json", server=server)
    assert out.returncode == 0, out.stderr
    final = json.loads(out.stdout)
    assert final["status"] == "completed" and final["files_completed"] + final["files_failed"] == 20
    assert out.stderr == ""  # not a terminal: no bar


def test_wait_exits_3_when_it_times_out(server):
    out = run("wait", server.batch_id, "--timeout", "0.3", "--poll-interval", "0.1", server=server)
    assert out.returncode == 3
    assert out.stderr == f"error: batch {server.batch_id} still processing after 0.3 s ({server_done(server)}/1234 files done)\n"
    assert out.stdout.splitlines()[1] == "status    processing"


def server_done(server):
    return st.Client(server.token, server.url).status(server.batch_id).files_done


def test_wait_exits_1_on_an_error_and_2_on_bad_arguments(server):
    assert run("wait", "no-such-batch", server=server).returncode == 1
    out = run("wait", server.batch_id, "--poll-interval", "0", server=server)
    assert out.returncode == 2 and "poll_interval must be" in out.stderr
    assert run("wait", server.batch_id, "--timeout", "soon", server=server).returncode == 2


def test_wait_shows_progress_on_a_terminal(server, tmp_path):
    batch_id = server.add_batch(20, statuses={"processing": 1.0}, processing_seconds=0.3)
    shown = stderr_on_a_terminal("wait", batch_id, "--poll-interval", "0.1", server=server, tqdm=False, tmp_path=tmp_path)
    assert shown.rstrip().split("\r")[-1].startswith("20/20 files [")
    shown = stderr_on_a_terminal("wait", batch_id, "--poll-interval", "0.1", server=server)
    assert shown.rstrip().split("\r")[-1].startswith("soket-transcribe: 20/20 files |")


def test_ctrl_c_stops_wait_with_130(server):
    proc = start("wait", server.batch_id, "--poll-interval", "30", server=server)
    deadline = time.monotonic() + 30
    while not any(r["path"].endswith(f"/status/batch/{server.batch_id}") for r in server.requests):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130 and "Traceback" not in stderr


# -- failures never destroy, and a resume is true for every format (issues 23.1, 23.2, 27.5) -


def read_export(path, format):
    """The records of an export file, whatever its format (Parquet: its table's rows)."""
    if format == "parquet":
        return pytest.importorskip("pyarrow.parquet").read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if format == "csv":
        return list(csv.DictReader(text.splitlines()))
    return json.loads(text) if format == "json" else jsonl(text)


@pytest.mark.parametrize("format", ["jsonl", "json", "csv", "parquet"])
def test_a_failed_export_leaves_the_file_that_was_there(server, tmp_path, format):
    path = tmp_path / f"prev.{format}"
    path.write_bytes(b"what was there")
    out = run_limited(0, "results", server.batch_id, "--format", format, "-o", str(path), server=server)
    assert out.returncode == 1
    assert "File too large" in out.stderr.splitlines()[0]
    assert f"{path} is left as it was" in out.stderr and "Traceback" not in out.stderr
    assert path.read_bytes() == b"what was there"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_device_behind_a_link_is_written_directly_and_kept(server, tmp_path):
    link = tmp_path / "full"
    link.symlink_to("/dev/full")
    out = run("results", server.batch_id, "-o", str(link), server=server)
    assert out.returncode == 1 and "No space left on device" in out.stderr
    refused = run("results", server.batch_id, "--format", "parquet", "-o", str(link), server=server)
    assert refused.returncode == 2
    assert refused.stderr == f"error: --format parquet needs -o to name a regular file (it may be rewritten); {link} is not one\n"
    assert link.is_symlink() and os.readlink(link) == "/dev/full"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_write_error_stops_at_its_page_and_keeps_whole_pages(server, client, tmp_path):
    path = tmp_path / "files.jsonl"
    # 4,096 bytes: pages 1 and 2 of 5 records fit, page 3 does not.
    out = run_limited(4, "results", server.batch_id, "--limit", "5", "--concurrency", "1", "-o", str(path), server=server)
    assert out.returncode == 1
    assert out.stderr.splitlines()[1:] == [
        f"pages before 3 are kept in {path}.partial; {path} was not written",
        f"resume with --start-page 3 (it continues {path}.partial)",
    ]
    assert max(pages_asked(server)) <= 3 + 4, "the read stops there (pages fetched ahead aside), not at the end: 247"
    kept = (tmp_path / "files.jsonl.partial").read_text(encoding="utf-8")
    assert kept.endswith("\n") and jsonl(kept) == list(client.iter_files(server.batch_id, limit=5, max_items=10))
    rest = run("results", server.batch_id, "--limit", "5", "--start-page", "3", "-o", str(path), server=server)
    assert rest.returncode == 0, rest.stderr
    assert jsonl(path.read_text(encoding="utf-8")) == list(client.iter_files(server.batch_id))


@pytest.mark.parametrize("format", ["jsonl", "json", "csv", "parquet"])
def test_ctrl_c_keeps_whole_pages_and_following_the_hint_completes_the_file(tmp_path, format):
    pytest.importorskip("pyarrow")
    path = tmp_path / f"files.{format}"
    path.write_bytes(b"an older export")
    with MockServer(600, latency_ms=200) as server:
        args = ("results", server.batch_id, "--limit", "100", "--concurrency", "1", "--format", format, "-o", str(path))
        proc = start(*args, server=server)
        while 3 not in pages_asked(server):  # pages 1 and 2 are written
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130 and "Traceback" not in stderr
        interrupted, kept, hint = stderr.splitlines()
        page = int(hint.split()[3])
        assert kept == f"pages before {page} are kept in {path}.partial; {path} is left as it was"
        assert hint == f"resume with --start-page {page} (it continues {path}.partial)"
        assert path.read_bytes() == b"an older export"
        assert len(read_export(tmp_path / f"files.{format}.partial", format)) == (page - 1) * 100

        rest = run(*args, "--start-page", str(page), server=server)
        assert rest.returncode == 0, rest.stderr
        whole = st.Client(server.token, server.url).iter_files(server.batch_id)
        assert [r["file_id"] for r in read_export(path, format)] == [r["file_id"] for r in whole]
    assert sorted(tmp_path.iterdir()) == [path]


def test_dash_is_stdout(server, client, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "soket_transcribe", "results", server.batch_id, "-o", "-"],
        capture_output=True, encoding="utf-8", env=cli_env(server), cwd=tmp_path, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert jsonl(out.stdout) == list(client.iter_files(server.batch_id))
    assert list(tmp_path.iterdir()) == []


def pages_of(records, limit):
    """A scripted answer serving `records` `limit` a page."""
    def answer(query):
        page = int(query["page"])
        items = records[(page - 1) * limit : page * limit]
        total_pages = -(-len(records) // limit)
        body = {"page": page, "limit": limit, "total_pages": total_pages, "total_files": len(records), "count": len(items), "files": items}
        return json.dumps(body).encode()
    return answer


def test_parquet_takes_a_field_whose_type_changes_on_a_later_page_as_to_arrow_does(scripted_server, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    records = [
        {"file_id": f"f{i}", "meta": {"lang": "en", "n": i}, "score": i, "tag": "plain"} for i in range(4)
    ] + [
        {"file_id": "f4", "meta": "not an object", "score": 0.5, "tag": {"a": [1, 2]}},
        {"file_id": "f5", "meta": None, "score": 7, "tag": "again", "late": True},
    ]
    url = scripted_server(pages_of(records, 2))
    path = tmp_path / "files.parquet"
    out = run("results", "b", "--limit", "2", "--format", "parquet", "-o", str(path), env=cli_env(SOKET_API_TOKEN="t0ken", SOKET_BASE_URL=url))
    assert out.returncode == 0, out.stderr
    written = pq.read_table(path)
    expected = st.Client("t0ken", url).iter_files("b", limit=2).to_arrow()
    assert written.schema.equals(expected.schema, check_metadata=True)
    assert written.schema.field("meta").metadata == {b"soket_transcribe.json": b"true"}
    rows = written.to_pylist()
    assert [r["score"] for r in rows] == [0.0, 1.0, 2.0, 3.0, 0.5, 7.0]
    for column in ("meta", "tag"):  # JSON text: compared as the values it reads back to
        assert [json.loads(r[column]) if r[column] else None for r in rows] == [r.get(column) for r in records]
    assert [r["late"] for r in rows] == [None] * 5 + [True]


# -- what the service says, shown as it is but never obeyed by the terminal (23.6, 23.12, 26.6) -


def scripted_env(url):
    return cli_env(SOKET_API_TOKEN="t0ken", SOKET_BASE_URL=url)


HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b"


def test_the_services_control_characters_are_shown_not_obeyed(scripted_server):
    answer = {"batch_id": "b" + HOSTILE, "status": "processing" + HOSTILE, "total_files": 3, "files_completed": 1, "files_failed": 0}
    url = scripted_server(lambda query: json.dumps(answer).encode())
    out = run("status", "b", env=scripted_env(url))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[:2] == [
        "batch     b\\x1b]0;PWNED\\x07\\x1b[2J\\x9b",
        "status    processing\\x1b]0;PWNED\\x07\\x1b[2J\\x9b",
    ]
    as_json = run("status", "b", "--json", env=scripted_env(url)).stdout
    assert not any(c in as_json for c in "\x1b\x07\x9b") and json.loads(as_json)["status"] == answer["status"]

    error_url = scripted_server(lambda query: json.dumps({"error": "quota" + HOSTILE}).encode())
    failed = run("results", "b", env=scripted_env(error_url))
    assert failed.returncode == 1
    assert "quota\\x1b]0;PWNED\\x07\\x1b[2J\\x9b" in failed.stderr and not any(c in failed.stderr for c in "\x1b\x07\x9b")


@pytest.mark.parametrize(
    "answer, lines",
    [
        (
            {"batch_id": None, "status": "processing", "total_files": 3, "files_completed": 8, "files_failed": 1,
             "estimated_audio_seconds": -7080, "estimated_completion_seconds": -5},
            ["batch     asked-for", "status    processing", "files     3 in the batch; the service counts 8 completed, 1 failed",
             "audio     unknown", "left      unknown"],
        ),
        (
            {"batch_id": "b", "status": "processing", "files_completed": 2},
            ["batch     b", "status    processing", "files     2 completed, unknown failed"],
        ),
        (
            {"batch_id": "b", "status": "completed", "total_files": 3, "files_completed": 2, "files_failed": 1,
             "estimated_audio_seconds": 7080},
            ["batch     b", "status    completed", "files     3 of 3 done (2 completed, 1 failed)", "audio     1 h 58 min (estimated)"],
        ),
    ],
)
def test_status_shows_what_is_known_and_nothing_misleading(scripted_server, answer, lines):
    url = scripted_server(lambda query: json.dumps(answer).encode())
    out = run("status", "asked-for", env=scripted_env(url))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == lines


def test_wait_exits_1_on_a_failed_batch(scripted_server):
    answer = {"batch_id": "b", "status": "failed", "total_files": 3, "files_completed": 1, "files_failed": 2}
    url = scripted_server(lambda query: json.dumps(answer).encode())
    out = run("wait", "b", "--poll-interval", "0.1", env=scripted_env(url))
    assert out.returncode == 1
    assert out.stderr == "error: batch b failed\n"
    assert out.stdout.splitlines()[1:3] == ["status    failed", "files     3 of 3 done (1 completed, 2 failed)"]


def test_an_export_that_may_miss_records_exits_1(server, tmp_path):
    # The mock serves page 2 shifted by one: a record slides past every read, the totals never move.
    batch = server.add_batch(30, seed=1)
    server.fail_next("stall", 1, stall_s=0.01)
    server.fail_next("shift", 1)
    target = tmp_path / "out.jsonl"
    out = run("results", batch, "--limit", "10", "--concurrency", "1", "-o", str(target), server=server)
    assert out.returncode == 1
    assert "records may be missing from what was written" in out.stderr.splitlines()[-1]
    assert len(target.read_text().splitlines()) == 29  # what was read is kept, and said to be short
