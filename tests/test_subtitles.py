"""Subtitles from speech segments, read back by the real parsers (`srt`, `webvtt-py`)."""

import pytest

import soket_transcribe as st
from soket_transcribe.subtitles import safe_filename
from soket_transcribe.testing import MockServer

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

RECORD = {
    "file_id": "f-1",
    "filename": "call.wav",
    "status": "completed",
    "result": {
        "text": "...",
        "segments": [
            {"start": 0.0, "end": 1.25, "text": "namaste", "speaker_id": "S1"},
            {"start": 1.25, "end": 3661.0006, "text": "line one\n\nline <two> & --> three", "speaker_id": "S2"},
            {"start": 3661.5, "end": 3662.0, "text": "no speaker"},
            {"start": 3662.0, "end": 3663.0, "text": "  ", "speaker_id": "S1"},  # nothing to show
        ],
    },
}


def vtt_seconds(clock):
    hours, minutes, seconds = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def srt_cues(text):
    return [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(text)]


def vtt_cues(text):
    return [(vtt_seconds(c.start), vtt_seconds(c.end), c.text) for c in webvtt.from_string(text)]


def test_srt_has_a_cue_per_segment_with_times_and_speakers():
    assert srt_cues(st.to_srt(RECORD)) == [
        (0.0, 1.25, "S1: namaste"),
        (1.25, 3661.001, "S2: line one\nline <two> & --> three"),
        (3661.5, 3662.0, "no speaker"),
    ]


def test_vtt_has_a_cue_per_segment_with_times_and_speakers():
    text = st.to_vtt(RECORD)
    assert text.startswith("WEBVTT\n")
    assert vtt_cues(text) == [
        (0.0, 1.25, "S1: namaste"),
        (1.25, 3661.001, "S2: line one\nline &lt;two&gt; &amp; --&gt; three"),  # webvtt-py leaves entities as sent
        (3661.5, 3662.0, "no speaker"),
    ]
    assert "--> 01:01:01.001\n" in text


def test_a_file_result_gives_the_same_subtitles():
    typed = st.FileResult.from_dict(RECORD)
    assert st.to_srt(typed) == st.to_srt(RECORD)
    assert st.to_vtt(typed) == st.to_vtt(RECORD)


def test_without_segments_the_error_says_to_fetch_speech_information():
    record = {**RECORD, "result": {"text": "hello"}}
    with pytest.raises(ValueError, match=r"f-1 has no speech segments: fetch it with speech_information=True"):
        st.to_srt(record)
    failed = {"file_id": "f-2", "status": "failed", "errors": ["boom"]}
    with pytest.raises(ValueError, match=r"f-2 has no result \(status 'failed'\)"):
        st.to_vtt(failed)
    bad = {**RECORD, "result": {"segments": [{"start": "0", "end": 1, "text": "x"}]}}
    with pytest.raises(ValueError, match="segment 0 needs numeric start and end"):
        st.to_srt(bad)
    with pytest.raises(TypeError, match="expected a record"):
        st.to_srt(["not", "a", "record"])


def test_no_spoken_segments_is_an_empty_but_valid_file():
    silent = {**RECORD, "result": {"segments": []}}
    assert srt_cues(st.to_srt(silent)) == []
    assert vtt_cues(st.to_vtt(silent)) == []


# -- a whole batch -------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["srt", "vtt"])
def test_write_subtitles_writes_one_file_per_completed_record(tmp_path, format):
    with MockServer(120, seed=3) as server:
        client = st.Client(server.token, server.url)
        records = list(client.iter_files(server.batch_id, speech_information=True))
        paths = client.iter_files(server.batch_id, speech_information=True).write_subtitles(tmp_path, format=format)
    completed = [r for r in records if r["status"] == "completed"]
    assert 0 < len(completed) < len(records)
    assert len(paths) == len(completed) == len(set(p.name.casefold() for p in paths))
    assert sorted(tmp_path.iterdir()) == sorted(paths)
    read = srt_cues if format == "srt" else vtt_cues
    for path, record in zip(paths, completed):
        assert path.suffix == "." + format
        cues = read(path.read_text(encoding="utf-8"))
        segments = record["result"]["segments"]
        assert [(start, end) for start, end, _ in cues] == [(s["start"], s["end"]) for s in segments]
        assert [text.split(": ", 1)[0] for _, _, text in cues] == [s["speaker_id"] for s in segments]


def test_write_subtitles_as_dataclasses_and_bad_format(tmp_path):
    with MockServer(30, seed=3) as server:
        client = st.Client(server.token, server.url)
        with pytest.raises(ValueError, match="format must be 'srt' or 'vtt'; got 'ass'"):
            client.iter_files(server.batch_id, speech_information=True).write_subtitles(tmp_path, format="ass")
        assert [r for r in server.requests if "/results/" in r["path"]] == []  # refused before any request
        typed = client.iter_files(server.batch_id, speech_information=True, as_dataclass=True)
        paths = typed.write_subtitles(tmp_path / "new" / "dir", format="vtt")
        assert paths and all(p.parent == tmp_path / "new" / "dir" for p in paths)
        with pytest.raises(ValueError, match="speech_information=True"):
            client.iter_files(server.batch_id).write_subtitles(tmp_path)


def test_names_that_collide_are_numbered_in_record_order(tmp_path):
    from soket_transcribe.subtitles import write_subtitles

    segment = {"start": 0.0, "end": 1.0, "text": "hi"}

    def rec(n, filename):
        return {"file_id": f"id-{n}", "filename": filename, "status": "completed", "result": {"segments": [segment]}}

    names = ["a.wav", "A.mp3", "a (2).wav", "a.flac", None, "", "dir/b.wav", "C:\\x\\b.wav"]
    records = [rec(n, name) for n, name in enumerate(names)]
    records.insert(1, {"file_id": "failed", "filename": "a.wav", "status": "failed"})
    paths = write_subtitles(records, tmp_path)
    assert [p.name for p in paths] == [
        "a.srt", "A (2).srt", "a (2) (2).srt", "a (3).srt", "id-4.srt", "id-5.srt", "b.srt", "b (2).srt",
    ]
    assert write_subtitles(records, tmp_path) == paths  # the same batch, the same names


@pytest.mark.parametrize(
    "name, safe",
    [
        ("meeting.wav", "meeting.srt"),
        ("C:\\recordings\\clip_1.wav", "clip_1.srt"),
        ("../../etc/passwd", "passwd.srt"),
        ("..", "fallback.srt"),
        (".hidden.wav", "hidden.srt"),
        ("CON.wav", "_CON.srt"),
        ("com1", "_com1.srt"),
        ("Lpt9.tar.gz", "_Lpt9.tar.srt"),
        ("aux .mp3", "_aux.srt"),
        ("conference.wav", "conference.srt"),
        ('a<b>c:d"e|f?g*h.wav', "a_b_c_d_e_f_g_h.srt"),
        ("tab\there\x00nul\x7fdel\x85nel.wav", "tab_here_nul_del_nel.srt"),
        ("ends with dots...", "ends with dots.srt"),
        ("réunion été.m4a", "réunion été.srt"),
        ("memo 📞 10820.wav", "memo 📞 10820.srt"),
        ("v1.2 notes", "v1.2 notes.srt"),
        (None, "fallback.srt"),
        ("", "fallback.srt"),
    ],
)
def test_safe_filename(name, safe):
    assert safe_filename(name, ".srt", "fallback") == safe


def test_safe_filename_is_normalised_and_short():
    decomposed = "re\u0301union.wav"  # as macOS spells "réunion"
    assert safe_filename(decomposed, ".vtt") == "r\u00e9union.vtt"
    long = safe_filename("é" * 300 + ".wav", ".srt")
    assert long.endswith("é.srt") and len(long.encode("utf-8")) <= 204
    assert safe_filename("...", ".srt", "..") == "file.srt"


def test_written_names_open_on_this_os(tmp_path):
    names = ["CON.wav", "a/b", "x" * 400, "\x01", "con", "🎙️" * 100]
    for name in names:
        path = tmp_path / safe_filename(name, ".srt")
        path.write_text("", encoding="utf-8")
        assert path.exists()
    assert len(list(tmp_path.iterdir())) == len(names)


# -- hostile or odd records ----------------------------------------------------------------


def test_a_speaker_id_cannot_add_or_break_cues():
    injected = "S1\n\n2\n00:00:00,000 --> 99:00:00,000\nInjected\r\n\x1b[2J\x00"
    record = {**RECORD, "result": {"segments": [{"start": 0.0, "end": 1.0, "text": "hello", "speaker_id": injected}]}}
    label = "S1 2 00:00:00,000 --> 99:00:00,000 Injected [2J"
    assert srt_cues(st.to_srt(record)) == [(0.0, 1.0, f"{label}: hello")]
    assert vtt_cues(st.to_vtt(record)) == [(0.0, 1.0, f"{label.replace('>', '&gt;')}: hello")]


def test_a_segment_text_cannot_add_a_cue():
    # No blank line needed: a number, then a timing line, inside one cue's text.
    injected = "X\n2\n00:00:00,000 --> 01:00:00,000\nINJECT"
    segments = [{"start": 0.0, "end": 1.0, "text": injected}, {"start": 2.0, "end": 3.0, "text": "next"}]
    record = {**RECORD, "result": {"segments": segments}}
    text = "X\n2\n\u206000:00:00,000 --> 01:00:00,000\nINJECT"
    assert srt_cues(st.to_srt(record)) == [(0.0, 1.0, text), (2.0, 3.0, "next")]
    assert [cue[2] for cue in vtt_cues(st.to_vtt(record))] == [injected.replace(">", "&gt;"), "next"]


def test_control_characters_never_reach_a_cue():
    record = {**RECORD, "result": {"segments": [{"start": 0, "end": 1, "text": "a\x1b]0;PWNED\x07b\x0cc\x85d"}]}}
    assert srt_cues(st.to_srt(record)) == [(0.0, 1.0, "a]0;PWNEDb\nc\nd")]


@pytest.mark.parametrize("end", [float("inf"), 1e15, 360_000, -1, float("nan")])
def test_times_no_reader_takes_are_a_value_error(end):
    record = {**RECORD, "result": {"segments": [{"start": 0.0, "end": end, "text": "x"}]}}
    for render in (st.to_srt, st.to_vtt):
        with pytest.raises(ValueError, match=r"f-1: segment 0 needs numeric start and end in seconds, from 0 to 360,000"):
            render(record)
    longest = {**RECORD, "result": {"segments": [{"start": 0.0, "end": 359_999.999, "text": "x"}]}}
    assert srt_cues(st.to_srt(longest)) == [(0.0, 359_999.999, "x")]


def record(file_id, segments):
    result = {"text": "x"} if segments is None else {"segments": segments}
    return {"file_id": file_id, "filename": f"{file_id}.wav", "status": "completed", "result": result}


def test_records_without_usable_segments_are_skipped_and_counted(tmp_path):
    from soket_transcribe.subtitles import write_subtitles

    segment = {"start": 0.0, "end": 1.0, "text": "hi"}
    records = [record("a", [segment]), record("b", None), record("c", [{**segment, "end": float("inf")}]), record("d", [segment])]
    with pytest.warns(RuntimeWarning, match=r"^2 completed files had no subtitles to write and were skipped: b has no speech"
                                            r" segments: .* \(and 1 more: see .skipped\)$"):
        written = write_subtitles(records, tmp_path)
    assert [p.name for p in written] == ["a.srt", "d.srt"] == sorted(p.name for p in tmp_path.iterdir())
    assert [(file_id, why.split(":")[0]) for file_id, why in written.skipped] == [("b", "b has no speech segments"), ("c", "c")]
    with pytest.raises(ValueError, match="none of the 1 completed files has speech segments: fetch with speech_information=True"):
        write_subtitles([record("b", None)], tmp_path / "none")


def test_write_subtitles_refuses_a_batch_already_read(tmp_path):
    with MockServer(30, seed=3) as server:
        client = st.Client(server.token, server.url)
        res = client.iter_files(server.batch_id, speech_information=True)
        assert len(list(res)) == 30
        with pytest.raises(RuntimeError, match="already read"):
            res.write_subtitles(tmp_path)
        with pytest.raises(RuntimeError, match="already read"):
            st.subtitles.write_subtitles(res, tmp_path)  # the module's function, as the method
        res = client.iter_files(server.batch_id, speech_information=True)
        assert res.write_subtitles(tmp_path)
        with pytest.raises(RuntimeError, match="already read"):
            res.write_subtitles(tmp_path)


def test_write_subtitles_replaces_a_link_never_what_it_points_to(tmp_path):
    from soket_transcribe.subtitles import write_subtitles

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me", encoding="utf-8")
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "a.srt").symlink_to("../outside.txt")
    (subs / "b.srt").symlink_to("../missing.txt")  # a dangling link: nothing created where it points
    written = write_subtitles([record("a", [{"start": 0, "end": 1, "text": "hi"}]), record("b", [])], subs)
    assert outside.read_text(encoding="utf-8") == "keep me" and not (tmp_path / "missing.txt").exists()
    assert [p.is_symlink() for p in written] == [False, False]
    assert srt_cues((subs / "a.srt").read_text(encoding="utf-8")) == [(0.0, 1.0, "hi")]
    assert sorted(p.name for p in subs.iterdir()) == ["a.srt", "b.srt"]  # no temporary file left
