"""What a type checker infers for the records a read yields. Never run: `python3 -m mypy
tests/typing` checks it (tests/test_typing.py runs that), and fails on a wrong `assert_type`,
or on a `type: ignore` that is no longer needed (the mistakes it stands for must stay errors)."""

# mypy: warn-unused-ignores

from typing import Any, Dict, Union

from typing_extensions import assert_type

import soket_transcribe as st

Record = Dict[str, Any]


def files(client: st.Client, flag: bool) -> None:
    assert_type(client.iter_files("b"), st.BatchResults[Record])
    assert_type(client.iter_files("b", as_dataclass=False), st.BatchResults[Record])
    assert_type(client.iter_files("b", as_dataclass=True), st.BatchResults[st.FileResult])
    assert_type(client.iter_files("b", as_dataclass=flag), st.BatchResults[Union[Record, st.FileResult]])
    for record in client.iter_files("b", status="completed", fields=["file_id"]):
        assert_type(record, Record)
    for typed in client.iter_files("b", limit=50, as_dataclass=True):
        assert_type(typed, st.FileResult)
        assert_type(typed.file_id, Union[str, None])
        typed["file_id"]  # type: ignore[index]
    for record in client.iter_files("b"):
        record.file_id  # type: ignore[attr-defined]
    assert_type(next(client.iter_files("b", as_dataclass=True)), st.FileResult)


def jobs(client: st.Client) -> None:
    for record in client.iter_jobs("b"):
        assert_type(record, Record)
    for typed in client.iter_jobs("b", as_dataclass=True):
        assert_type(typed, st.JobResult)
        assert_type(typed.job_id, Union[str, None])
    client.iter_jobs("b", as_dataclass=True, nope=1)  # type: ignore[call-overload]


async def files_async(client: st.Client) -> None:
    async for record in client.iter_files("b"):
        assert_type(record, Record)
    async for typed in client.iter_files("b", as_dataclass=True):
        assert_type(typed, st.FileResult)
    async for job in client.iter_jobs("b", as_dataclass=True):
        assert_type(job, st.JobResult)


async def follow(client: st.Client) -> None:
    for record in client.follow("b"):
        assert_type(record, Record)
    for typed in client.follow("b", as_dataclass=True, poll_interval=1.0):
        assert_type(typed, st.FileResult)
    async for typed in client.follow("b", as_dataclass=True):
        assert_type(typed, st.FileResult)


def one_file(client: st.Client) -> None:
    assert_type(client.get_file("f"), Record)
    assert_type(client.get_file("f", as_dataclass=True), st.FileResult)
    assert_type(client.status("b"), st.BatchStatus)
