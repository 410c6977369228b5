//! `GET /download/batch/{batch_id}`: every record of a batch in one answer, NDJSON (one record a
//! line) or a JSON array, streamed a slice of records at a time with chunked transfer, so that a
//! large batch is never held whole. The records are byte-equal to the pages' records.

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use super::batch::Batch;
use super::data::{push_file, push_job, Include};
use super::faults::malform;
use super::query::{pairs, parse_results_query, ResultsQuery};
use super::records::Records;

/// Records rendered per frame of the body (about 140 KB of generated records).
const RECORDS_PER_FRAME: u64 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Ndjson,
    Json,
}

/// The download's query: the results query's filter and options, and `format`; `Err` holds the
/// 422 body. `page` and `limit` do not apply and are ignored, as any unknown parameter.
pub(crate) fn parse_download_query(query: &str) -> Result<(ResultsQuery, Format), Value> {
    let options: Vec<&str> = query
        .split('&')
        .filter(|pair| !matches!(pair.split_once('=').map_or(*pair, |(name, _)| name), "page" | "limit"))
        .collect();
    let parsed = parse_results_query(&options.join("&"));
    let mut errors = match &parsed {
        Ok(_) => Vec::new(),
        Err(body) => body["detail"].as_array().cloned().unwrap_or_default(),
    };
    let mut format = Format::Ndjson;
    for (_, value) in pairs(query).filter(|(name, _)| name == "format") {
        match value.as_str() {
            "ndjson" => format = Format::Ndjson,
            "json" => format = Format::Json,
            _ => errors.push(json!({
                "type": "enum", "loc": ["query", "format"], "msg": "Input should be 'ndjson' or 'json'",
                "input": value, "ctx": {"expected": "'ndjson' or 'json'"},
            })),
        }
    }
    match parsed {
        Ok(q) if errors.is_empty() => Ok((q, format)),
        _ => Err(json!({ "detail": errors })),
    }
}

/// Where the records come from.
pub(crate) enum Source {
    Generated { batch: Arc<Mutex<Batch>>, batch_id: String, seed: u64 },
    Given(Arc<Records>),
}

impl Source {
    /// A view with no records (a status filter of a batch that does not exist).
    pub(crate) fn empty() -> Source {
        Source::Given(Arc::new(Records::new(Vec::new()).expect("no records to check")))
    }

    /// How many records the view holds now.
    fn total(&self, q: &ResultsQuery) -> u64 {
        self.render(q, 0, 0, &mut Vec::new())
    }

    /// Writes records `offset..offset + count` of the view, each followed by a newline; returns
    /// the view's size.
    fn render(&self, q: &ResultsQuery, offset: u64, count: u64, out: &mut Vec<u8>) -> u64 {
        match self {
            Source::Generated { batch, batch_id, seed } => {
                let batch = batch.lock().unwrap_or_else(|p| p.into_inner());
                let include = Include { chunks: q.chunks, speech: q.speech_information };
                let selection = if q.raw {
                    batch.select_jobs(q.status, offset, count)
                } else {
                    batch.select_files(q.status, offset, count)
                };
                for item in &selection.items {
                    match item.chunk {
                        Some(_) => push_job(out, batch_id, *seed, *item, include),
                        None => push_file(out, *seed, *item, include),
                    }
                    out.push(b'\n');
                }
                selection.total
            }
            Source::Given(records) => {
                let (total, slice) = records.select(q.status, offset, count);
                for record in slice {
                    out.extend_from_slice(record.as_bytes());
                    out.push(b'\n');
                }
                total
            }
        }
    }
}

/// How this answer misbehaves, if it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spoil {
    /// The connection drops in the middle of the record at this index.
    CutAt(u64),
    /// The record at this index is sent garbled (truncated or not).
    GarbleAt(u64, bool),
}

/// The body of one download, rendered frame by frame as the client reads it.
pub(crate) struct DownloadBody {
    source: Source,
    query: ResultsQuery,
    format: Format,
    /// The view's size when the request arrived: records joining later are not sent.
    total: u64,
    next: u64,
    spoil: Option<Spoil>,
    gzip: Option<GzEncoder<Vec<u8>>>,
    state: State,
}

enum State {
    Streaming,
    /// The part before the cut was sent: pause (so it is flushed), then fail.
    Cutting(Pin<Box<tokio::time::Sleep>>),
    Done,
}

impl DownloadBody {
    pub(crate) fn new(source: Source, query: ResultsQuery, format: Format) -> DownloadBody {
        let total = source.total(&query);
        DownloadBody { source, query, format, total, next: 0, spoil: None, gzip: None, state: State::Streaming }
    }

    /// Records the answer will hold.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn spoil(&mut self, spoil: Spoil) {
        self.spoil = Some(spoil);
    }

    pub(crate) fn gzip(&mut self) {
        self.gzip = Some(GzEncoder::new(Vec::new(), Compression::fast()));
    }

    /// The next frame's bytes (before compression), and whether the stream is cut after them.
    fn render_frame(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(160 * 1024);
        if self.next == 0 && self.format == Format::Json {
            out.push(b'[');
        }
        let count = RECORDS_PER_FRAME.min(self.total - self.next);
        let spoiled = self.spoil.filter(|s| match s {
            Spoil::CutAt(at) | Spoil::GarbleAt(at, _) => (self.next..self.next + count.max(1)).contains(at),
        });
        let mut records = Vec::with_capacity(count as usize * 800);
        self.source.render(&self.query, self.next, count, &mut records);
        let lines: Vec<&[u8]> = records.split_inclusive(|&b| b == b'\n').collect();
        let mut cut = false;
        for (i, line) in lines.iter().enumerate() {
            let index = self.next + i as u64;
            match spoiled {
                Some(Spoil::CutAt(at)) if at == index => {
                    out.extend_from_slice(&line[..line.len() / 2]);
                    cut = true;
                    break;
                }
                Some(Spoil::GarbleAt(at, truncate)) if at == index => {
                    out.extend_from_slice(&malform(line.strip_suffix(b"\n").unwrap_or(line), truncate));
                    out.push(b'\n');
                }
                _ => self.push_record(&mut out, index, line),
            }
        }
        // A cut planned past the records sent (an empty view) cuts the body where it is.
        cut |= matches!(spoiled, Some(Spoil::CutAt(_))) && lines.is_empty();
        self.next += count;
        if !cut && self.next == self.total && self.format == Format::Json {
            out.push(b']');
        }
        (out, cut)
    }

    fn push_record(&self, out: &mut Vec<u8>, index: u64, line: &[u8]) {
        match self.format {
            Format::Ndjson => out.extend_from_slice(line),
            Format::Json => {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
            }
        }
    }

    /// Compressed when asked: each frame flushed, so the client can read it as it arrives.
    fn encode(&mut self, bytes: Vec<u8>, last: bool) -> Vec<u8> {
        let Some(encoder) = self.gzip.as_mut() else { return bytes };
        encoder.write_all(&bytes).expect("writing to a Vec");
        if last {
            let encoder = self.gzip.take().expect("present");
            return encoder.finish().expect("writing to a Vec");
        }
        encoder.flush().expect("writing to a Vec");
        std::mem::take(encoder.get_mut())
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        match &mut self.state {
            State::Done => Poll::Ready(None),
            State::Cutting(pause) => {
                let failed = pause
                    .as_mut()
                    .poll(cx)
                    .map(|()| Some(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "mock fault: download cut"))));
                if failed.is_ready() {
                    self.state = State::Done;
                }
                failed
            }
            State::Streaming => {
                let (bytes, cut) = self.render_frame();
                let last = !cut && self.next >= self.total;
                // A cut stream is never finished: its gzip trailer is never sent.
                let bytes = self.encode(bytes, last);
                self.state = match (cut, last) {
                    (true, _) => State::Cutting(Box::pin(tokio::time::sleep(Duration::from_millis(20)))),
                    (false, true) => State::Done,
                    (false, false) => State::Streaming,
                };
                Poll::Ready(Some(Ok(Bytes::from(bytes))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::Changes;
    use super::super::data::{status_cdf, DEFAULT_WEIGHTS};
    use super::*;

    fn generated(files: u64) -> Source {
        let batch = Batch::new(3, files, Changes::default(), status_cdf(DEFAULT_WEIGHTS).unwrap());
        Source::Generated { batch: Arc::new(Mutex::new(batch)), batch_id: "b".into(), seed: 3 }
    }

    /// The whole body, and whether it ended in an error (a cut).
    async fn drain(body: &mut DownloadBody) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        loop {
            match std::future::poll_fn(|cx| body.poll_next(cx)).await {
                Some(Ok(bytes)) => out.extend_from_slice(&bytes),
                Some(Err(_)) => return (out, true),
                None => return (out, false),
            }
        }
    }

    fn query(raw: bool) -> ResultsQuery {
        parse_download_query(if raw { "raw=true&chunks=true" } else { "speech_information=1" }).unwrap().0
    }

    #[tokio::test]
    async fn ndjson_lines_are_the_pages_records() {
        for raw in [false, true] {
            let q = query(raw);
            let mut body = DownloadBody::new(generated(450), q, Format::Ndjson);
            let (bytes, cut) = drain(&mut body).await;
            assert!(!cut);
            let mut expected = Vec::new();
            generated(450).render(&q, 0, u64::MAX, &mut expected);
            assert_eq!(bytes, expected);
            let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;
            assert_eq!(lines, body.total());
            assert!(raw || lines == 450);
        }
    }

    #[tokio::test]
    async fn json_format_is_one_array_and_gzip_inflates_to_it() {
        let mut body = DownloadBody::new(generated(450), query(false), Format::Json);
        let (plain, _) = drain(&mut body).await;
        let array: Vec<Value> = serde_json::from_slice(&plain).unwrap();
        assert_eq!(array.len(), 450);
        let mut body = DownloadBody::new(generated(450), query(false), Format::Json);
        body.gzip();
        let (compressed, _) = drain(&mut body).await;
        let mut inflated = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut inflated).unwrap();
        assert_eq!(inflated, plain);
        let mut empty = DownloadBody::new(generated(0), query(false), Format::Json);
        assert_eq!(drain(&mut empty).await.0, b"[]");
    }

    #[tokio::test]
    async fn a_cut_ends_mid_line_and_a_garbled_line_does_not_parse() {
        let mut body = DownloadBody::new(generated(450), query(false), Format::Ndjson);
        body.spoil(Spoil::CutAt(225));
        let (bytes, cut) = drain(&mut body).await;
        assert!(cut);
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 225);
        assert!(!bytes.ends_with(b"\n"));
        let mut body = DownloadBody::new(generated(450), query(false), Format::Ndjson);
        body.spoil(Spoil::GarbleAt(10, false));
        let (bytes, cut) = drain(&mut body).await;
        let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        assert!(!cut && lines.len() == 450);
        let parses = |l: &[u8]| serde_json::from_slice::<Value>(l).is_ok();
        assert!(!parses(lines[10]) && parses(lines[9]) && parses(lines[11]));
    }

    #[test]
    fn query_takes_format_and_reports_every_error() {
        let (q, format) = parse_download_query("status=failed&raw=1&format=json&page=0&limit=999").unwrap();
        assert_eq!((q.status, q.raw, format), (Some(1), true, Format::Json));
        assert_eq!(parse_download_query("").unwrap().1, Format::Ndjson);
        let body = parse_download_query("format=csv&raw=maybe").unwrap_err();
        let locs: Vec<&str> =
            body["detail"].as_array().unwrap().iter().map(|e| e["loc"][1].as_str().unwrap()).collect();
        assert_eq!(locs, ["raw", "format"]);
    }
}
