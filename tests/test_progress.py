"""The one progress bar of the table methods, `Client.wait` and the command line: through tqdm
when it is installed (as in the test extra), else a line of our own; both are run here."""

import sys

import pytest

from soket_transcribe.progress import NoBar, ProgressBar, close_progress, progress_bar, progress_callback


@pytest.fixture
def no_tqdm(monkeypatch):
    """tqdm made unimportable, as where it is not installed."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_tqdm_draws_exact_counts_the_unit_and_percent(capsys):
    bar = ProgressBar("files")
    assert bar._tqdm is not None
    bar(0, None)
    bar(1000, 1000)
    bar.message("warning: the batch changed")
    bar.close()
    err = capsys.readouterr().err
    assert "soket-transcribe: 0 files [" in err
    assert "warning: the batch changed\n" in err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("soket-transcribe: 1,000/1,000 files |") and "| 100% [" in last and "files/s]" in last


def test_the_stderr_line_shows_done_total_percent_rate_and_ends_with_a_newline(no_tqdm, capsys):
    bar = ProgressBar("files")
    bar(0, None)
    bar(500, 1000)  # within a tenth of a second of the last draw: skipped
    bar(1000, 1000)  # the last step is always drawn
    bar.close()
    err = capsys.readouterr().err
    last = err.rstrip("\n").split("\r")[-1]
    assert last.startswith("1,000/1,000 files [" + "#" * 24 + "] 100%")
    assert "files/s" in last and "in 0:0" in last
    assert "500/1,000" not in err
    assert err.endswith("\n") and err.count("\n") == 1


def test_an_unknown_total_shows_the_count_so_far(no_tqdm, capsys):
    bar = ProgressBar("jobs")
    bar(42, None)
    bar.close()
    assert capsys.readouterr().err.split("\r")[-1].startswith("42 jobs  ")


def test_a_message_goes_above_the_bar_which_is_drawn_again(no_tqdm, capsys):
    bar = ProgressBar("files")
    bar(10, 20)
    bar.message("warning: the batch changed")
    bar.close()
    err = capsys.readouterr().err
    before, after = err.split("warning: the batch changed\n")
    assert before.startswith("\r10/20 files") and before.endswith("\r")
    assert after.startswith("\r10/20 files")


def test_a_bar_only_on_a_terminal_is_none_when_stderr_is_a_pipe(capsys):
    bar = progress_bar("files", terminal_only=True)  # pytest captures stderr: not a terminal
    assert type(bar) is NoBar
    bar(1, 2)
    bar.close()
    assert capsys.readouterr().err == ""
    assert type(progress_bar("files", enabled=False)) is NoBar
    assert isinstance(progress_bar("files"), ProgressBar)


def test_progress_argument():
    assert progress_callback(False) is None and progress_callback(None) is None
    bar = progress_callback(True)
    assert isinstance(bar, ProgressBar)
    close_progress(bar)
    own = [].append
    assert progress_callback(own) is own
    close_progress(own)  # the caller's own callable is left alone
    with pytest.raises(TypeError, match="progress must be a bool or a callable"):
        progress_callback("yes")


def test_a_table_of_jobs_counts_jobs(capsys):
    import soket_transcribe as st
    from soket_transcribe.testing import MockServer

    with MockServer(files=30, seed=2) as srv:
        client = st.Client(srv.token, srv.url)
        jobs = client.iter_jobs(srv.batch_id).to_arrow(progress=True).num_rows
        last = capsys.readouterr().err.rstrip("\n").split("\r")[-1]
        assert last.startswith(f"soket-transcribe: {jobs:,}/{jobs:,} jobs |"), last
