//! The server over real TCP, with a deliberately tiny HTTP/1.1 client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use serde_json::Value;

use super::*;

/// One keep-alive connection to the server.
struct Client {
    reader: BufReader<TcpStream>,
    port: u16,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the whole Content-Length arrived.
    complete: bool,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> Vec<u8> {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = Vec::new();
            GzDecoder::new(&self.body[..]).read_to_end(&mut out).expect("valid gzip");
            out
        } else {
            self.body.clone()
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.text()).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Client {
    fn new(server: &MockServer) -> Client {
        Client::to_port(server.port())
    }

    fn to_port(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { reader: BufReader::new(stream), port }
    }

    /// GET with the test token.
    fn get(&mut self, target: &str) -> Reply {
        self.request("GET", target, &[("Authorization", "Bearer test-token")])
    }

    fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", self.port);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.reader.get_mut().write_all(head.as_bytes()).expect("send");
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status = line.split(' ').nth(1).expect("status").parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = Vec::new();
        let _ = (&mut self.reader).take(length as u64).read_to_end(&mut body);
        let complete = body.len() == length;
        Reply { status, headers, body, complete }
    }
}

fn start(config: MockConfig) -> MockServer {
    MockServer::start(config).expect("server starts")
}

fn results(server: &MockServer, query: &str) -> String {
    format!("/transcribe/results/batch/{}?{query}", server.batch_id())
}

#[test]
fn serves_pages_with_keep_alive_and_true_totals() {
    let server = start(MockConfig { files: 105, ..MockConfig::default() });
    assert_eq!(server.url(), format!("http://127.0.0.1:{}/transcribe", server.port()));
    let mut client = Client::new(&server);
    let mut ids = Vec::new();
    for page in 1..=3 {
        let reply = client.get(&results(&server, &format!("page={page}&limit=50")));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let v = reply.json();
        assert_eq!((v["total_files"].as_u64(), v["total_pages"].as_u64()), (Some(105), Some(3)));
        ids.extend(v["files"].as_array().unwrap().iter().map(|f| f["file_id"].as_str().unwrap().to_string()));
    }
    assert_eq!(ids.len(), 105);
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 105);
    let past = client.get(&results(&server, "page=9&limit=50")).json();
    assert_eq!((past["count"].as_u64(), past["total_files"].as_u64()), (Some(0), Some(105)));
    assert_eq!(server.requests().len(), 4, "one connection, four requests");
}

#[test]
fn status_filters_and_raw_jobs_add_up() {
    let server = start(MockConfig { files: 400, ..MockConfig::default() });
    let mut client = Client::new(&server);
    let total_files: u64 = data::STATUS_NAMES
        .iter()
        .map(|s| client.get(&results(&server, &format!("status={s}&limit=1"))).json()["total_files"].as_u64().unwrap())
        .sum();
    assert_eq!(total_files, 400);
    let jobs = client.get(&results(&server, "raw=true&limit=200")).json();
    let total_jobs = jobs["total_jobs"].as_u64().unwrap();
    assert!(total_jobs > 400 && total_jobs <= 1200);
    let by_status: u64 = data::STATUS_NAMES
        .iter()
        .map(|s| {
            client.get(&results(&server, &format!("raw=true&status={s}&limit=1"))).json()["total_jobs"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(by_status, total_jobs);
    let failed = client.get(&results(&server, "raw=1&status=failed&limit=200")).json();
    for job in failed["jobs"].as_array().unwrap() {
        assert_eq!(job["status"], "failed");
        assert!(job.get("result").is_none() && job["errors"][0]["code"].is_string());
        assert_eq!(job["batch_id"], server.batch_id());
    }
}

#[test]
fn auth_is_checked_and_logged() {
    let server = start(MockConfig { token: "s3cret".to_string(), ..MockConfig::default() });
    let mut client = Client::new(&server);
    let target = results(&server, "");
    let none = client.request("GET", &target, &[]);
    assert_eq!((none.status, none.json()["detail"].as_str()), (401, Some("Not authenticated")));
    let wrong = client.request("GET", &target, &[("Authorization", "Bearer nope")]);
    assert_eq!((wrong.status, wrong.json()["detail"].as_str()), (401, Some("Invalid token")));
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    assert_eq!(client.request("GET", &target, &[("Authorization", "bearer s3cret")]).status, 200);
    let log = server.requests();
    assert_eq!(
        log.iter().map(|r| (r.auth_present, r.authorized)).collect::<Vec<_>>(),
        [(false, false), (true, false), (true, true)]
    );
    assert_eq!(log[0].path, format!("/transcribe/results/batch/{}", server.batch_id()));
    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[test]
fn validation_errors_are_fastapi_422s() {
    let server = start(MockConfig::default());
    let mut client = Client::new(&server);
    for (query, loc) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("status=done", "status"),
        ("raw=maybe", "raw"),
        ("speech_information=2", "speech_information"),
    ] {
        let reply = client.get(&results(&server, query));
        assert_eq!(reply.status, 422, "{query}");
        let v = reply.json();
        assert_eq!(v["detail"][0]["loc"], serde_json::json!(["query", loc]), "{query}");
        assert!(v["detail"][0]["msg"].is_string());
    }
    assert_eq!(client.get("/transcribe/results/batch/").status, 404);
    assert_eq!(client.get("/elsewhere").status, 404);
    assert_eq!(client.request("POST", &results(&server, ""), &[]).status, 405);
}

#[test]
fn unknown_batches_and_encoded_ids() {
    let server = start(MockConfig { files: 3, ..MockConfig::default() });
    let mut client = Client::new(&server);
    let missing = client.get("/transcribe/results/batch/nope");
    assert_eq!((missing.status, missing.json()), (404, serde_json::json!({"error": "batch not found"})));
    let filtered = client.get("/transcribe/results/batch/nope?status=completed").json();
    assert_eq!((filtered["total_files"].as_u64(), filtered["total_pages"].as_u64()), (Some(0), Some(0)));
    assert_eq!(client.get("/transcribe/status/batch/nope").status, 404);

    let id = server
        .add_batch(BatchSpec { files: 7, batch_id: Some("a/b?c#d é".to_string()), ..BatchSpec::default() })
        .unwrap();
    let page = client.get("/transcribe/results/batch/a%2Fb%3Fc%23d%20%C3%A9").json();
    assert_eq!((page["batch_id"].as_str(), page["total_files"].as_u64()), (Some(id.as_str()), Some(7)));
    assert_eq!(client.get("/transcribe/results/batch/a/b").status, 404);

    let lenient = start(MockConfig { not_found_status: 200, ..MockConfig::default() });
    let reply = Client::new(&lenient).get("/transcribe/results/batch/nope");
    assert_eq!((reply.status, reply.json()["error"].as_str()), (200, Some("batch not found")));
}

#[test]
fn gzip_when_asked_and_allowed() {
    let server = start(MockConfig::default());
    let mut client = Client::new(&server);
    let target = results(&server, "limit=200&speech_information=true");
    let plain = client.get(&target);
    let auth = ("Authorization", "Bearer test-token");
    let zipped = client.request("GET", &target, &[auth, ("Accept-Encoding", "gzip, deflate, br")]);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.text(), plain.body);
    assert!(
        zipped.body.len() * 3 < plain.body.len(),
        "{} vs {}: text should compress",
        zipped.body.len(),
        plain.body.len()
    );
    let refused = client.request("GET", &target, &[auth, ("Accept-Encoding", "gzip;q=0, identity")]);
    assert_eq!(refused.header("content-encoding"), None);
    let off = start(MockConfig { gzip: false, ..MockConfig::default() });
    let reply = Client::new(&off).request("GET", &results(&off, ""), &[auth, ("Accept-Encoding", "gzip")]);
    assert_eq!(reply.header("content-encoding"), None);
}

#[test]
fn pages_are_deterministic_by_seed() {
    let body = |seed, host: &str| {
        let server = start(MockConfig { seed, host: host.to_string(), ..MockConfig::default() });
        let mut client = Client::new(&server);
        client.get(&results(&server, "limit=20&chunks=true&speech_information=true")).json()
    };
    let a = body(5, "127.0.0.1");
    assert_eq!(a, body(5, "127.0.0.1"));
    assert_ne!(a["files"], body(6, "127.0.0.1")["files"]);
    assert_ne!(a["batch_id"], body(6, "127.0.0.1")["batch_id"]);
}

#[test]
fn random_faults_follow_the_rate() {
    let server = start(MockConfig { fault_rate: 0.2, seed: 3, ..MockConfig::default() });
    let mut client = Client::new(&server);
    let target = results(&server, "limit=5");
    let (mut bad, n) = (0, 2000);
    for _ in 0..n {
        let reply = client.get(&target);
        let ok = reply.status == 200 && reply.complete && serde_json::from_slice::<Value>(&reply.body).is_ok();
        if !ok {
            bad += 1;
        }
        if !reply.complete {
            client = Client::new(&server);
        }
    }
    let injected = server.faults_injected();
    assert_eq!(bad, injected);
    assert!((320..480).contains(&injected), "{injected} faults in {n}");
    let logged = server.requests().iter().filter(|r| r.fault.is_some()).count() as u64;
    assert_eq!(logged, injected);
    let rate_limited = server.requests().iter().find(|r| r.fault.as_deref() == Some("429")).is_some();
    assert!(rate_limited);
}

#[test]
fn a_status_fault_sends_retry_after_only_when_given() {
    let server = start(MockConfig::default());
    let target = results(&server, "limit=100");
    server.fail_next(FaultKind::StatusRetryAfter { code: 503, retry_after: "1".to_string() }, 1);
    server.fail_next(FaultKind::Status(503), 1);
    let mut client = Client::new(&server);
    let busy = client.get(&target);
    assert_eq!((busy.status, busy.header("retry-after")), (503, Some("1")));
    assert_eq!(busy.json()["detail"].as_str(), Some("Service Unavailable"));
    let plain = client.get(&target);
    assert_eq!((plain.status, plain.header("retry-after")), (503, None));
    let labels: Vec<_> = server.requests().into_iter().filter_map(|r| r.fault).collect();
    assert_eq!(labels, ["status:503", "status:503"]);
}

#[test]
fn scripted_faults_come_in_order() {
    let server = start(MockConfig::default());
    let target = results(&server, "limit=100");
    server.fail_next(FaultKind::Status(500), 2);
    server.fail_next(FaultKind::RateLimited { retry_after: "7".to_string() }, 1);
    server.fail_next(FaultKind::CutBody, 1);
    server.fail_next(FaultKind::MalformedJson, 1);
    server.fail_next(FaultKind::Stall(Duration::from_millis(300)), 1);
    let mut client = Client::new(&server);
    for _ in 0..2 {
        let reply = client.get(&target);
        assert_eq!((reply.status, reply.json()["detail"].as_str()), (500, Some("Internal Server Error")));
    }
    let limited = client.get(&target);
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("7")));
    let cut = client.get(&target);
    assert_eq!(cut.status, 200);
    assert!(!cut.complete && !cut.body.is_empty());
    let mut client = Client::new(&server);
    let malformed = client.get(&target);
    assert_eq!(malformed.status, 200);
    assert!(malformed.complete && serde_json::from_slice::<Value>(&malformed.body).is_err());
    let started = Instant::now();
    assert_eq!(client.get(&target).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(client.get(&target).status, 200);
    assert_eq!(server.faults_injected(), 6);
    let labels: Vec<_> = server.requests().into_iter().filter_map(|r| r.fault).collect();
    assert_eq!(labels, ["status:500", "status:500", "429", "cut", "malformed", "stall:300ms"]);
}

#[test]
fn redirects_carry_path_and_query() {
    let target = start(MockConfig { host: "127.0.0.2".to_string(), ..MockConfig::default() });
    assert!(target.url().starts_with("http://127.0.0.2:"));
    let server = start(MockConfig { redirect_to: Some(target.url()), ..MockConfig::default() });
    let reply = Client::new(&server).get(&results(&server, "page=2&limit=10"));
    assert_eq!(reply.status, 307);
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/results/batch/{}?page=2&limit=10", target.url(), server.batch_id()).as_str())
    );
}

#[test]
fn a_growing_batch_gains_files_per_request() {
    let server = start(MockConfig::default());
    let id = server.add_batch(BatchSpec { files: 10, seed: 1, grow_per_request: 5, ..BatchSpec::default() }).unwrap();
    assert_ne!(id, server.batch_id());
    let mut client = Client::new(&server);
    let totals: Vec<_> = (0..3)
        .map(|_| client.get(&format!("/transcribe/results/batch/{id}?limit=1")).json()["total_files"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [10, 15, 20]);
    let status = client.get(&format!("/transcribe/status/batch/{id}")).json();
    assert_eq!((status["total_files"].as_u64(), status["status"].as_str()), (Some(25), Some("processing")));
}

#[test]
fn latency_is_added_without_blocking_other_requests() {
    let server = start(MockConfig { latency_ms: 200, ..MockConfig::default() });
    let started = Instant::now();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let port = server.port();
            let target = results(&server, "limit=1");
            std::thread::spawn(move || Client::to_port(port).get(&target).status)
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap() == 200));
    let elapsed = started.elapsed();
    // One after another they would take 3.2 s; the bound leaves a loaded machine room.
    assert!(elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(1600), "{elapsed:?}");
}

#[test]
fn stop_closes_the_port_and_bad_configs_are_refused() {
    let mut server = start(MockConfig::default());
    let port = server.port();
    let started = Instant::now();
    server.stop();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    for config in [
        MockConfig { fault_rate: 1.5, ..MockConfig::default() },
        MockConfig { statuses: Some(vec![("done".to_string(), 1.0)]), ..MockConfig::default() },
        MockConfig { statuses: Some(vec![("failed".to_string(), 0.0)]), ..MockConfig::default() },
        MockConfig { not_found_status: 1000, ..MockConfig::default() },
    ] {
        assert_eq!(MockServer::start(config).err().map(|e| e.kind()), Some(std::io::ErrorKind::InvalidInput));
    }
    let only_failed =
        start(MockConfig { statuses: Some(vec![("failed".to_string(), 2.0)]), files: 50, ..MockConfig::default() });
    let v = Client::new(&only_failed).get(&results(&only_failed, "status=failed")).json();
    assert_eq!(v["total_files"], 50);
}

#[test]
fn stop_does_not_wait_for_a_stalled_request() {
    let mut server = start(MockConfig::default());
    server.fail_next(FaultKind::Stall(Duration::from_secs(30)), 1);
    let port = server.port();
    let target = results(&server, "");
    std::thread::spawn(move || {
        let _ = Client::to_port(port).get(&target);
    });
    while server.requests().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn one_file_is_the_record_its_batch_holds() {
    let server = start(MockConfig { files: 30, ..MockConfig::default() });
    let mut client = Client::new(&server);
    let options = "chunks=true&speech_information=true";
    let page = client.get(&results(&server, &format!("limit=30&{options}")));
    let ids: Vec<String> =
        page.json()["files"].as_array().unwrap().iter().map(|f| f["file_id"].as_str().unwrap().to_string()).collect();
    for (n, id) in ids.iter().enumerate() {
        let encoded = if n % 2 == 0 { id.clone() } else { id.replace('-', "%2d") };
        let one = client.get(&format!("/transcribe/results/file/{encoded}?{options}"));
        assert_eq!(one.status, 200);
        let (start, end) =
            (b"[,".map(|c| [&[c][..], &one.body[..]].concat()), b",]".map(|c| [&one.body[..], &[c]].concat()));
        let inside = |part: &Vec<u8>| page.body.windows(part.len()).any(|w| w == part.as_slice());
        assert!(start.iter().any(inside) && end.iter().any(inside), "file {n} is not byte-equal to its page element");
    }
    let plain = client.get(&format!("/transcribe/results/file/{}", ids[0])).json();
    assert!(plain.get("chunk_results").is_none());
    let missing = client.get("/transcribe/results/file/00000000-0000-4000-8000-000000000000");
    assert_eq!((missing.status, missing.json()), (404, serde_json::json!({"error": "file not found"})));
    assert_eq!(client.get(&format!("/transcribe/results/file/{}?chunks=maybe", ids[0])).status, 422);
    assert_eq!(client.request("GET", &format!("/transcribe/results/file/{}", ids[0]), &[]).status, 401);
}

#[test]
fn status_and_file_requests_get_the_same_faults() {
    let server = start(MockConfig { files: 5, ..MockConfig::default() });
    let mut client = Client::new(&server);
    let file_id = client.get(&results(&server, "limit=1")).json()["files"][0]["file_id"].as_str().unwrap().to_string();
    server.fail_next(FaultKind::Status(503), 2);
    server.fail_next(FaultKind::MalformedJson, 1);
    assert_eq!(client.get(&format!("/transcribe/status/batch/{}", server.batch_id())).status, 503);
    assert_eq!(client.get(&format!("/transcribe/results/file/{file_id}")).status, 503);
    let malformed = client.get(&format!("/transcribe/status/batch/{}", server.batch_id()));
    assert!(malformed.status == 200 && serde_json::from_slice::<Value>(&malformed.body).is_err());
    assert_eq!(client.get(&format!("/transcribe/results/file/{file_id}")).status, 200);
    let labels: Vec<_> = server.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(
        labels[1..],
        [Some("status:503".to_string()), Some("status:503".to_string()), Some("malformed".to_string()), None]
    );
}

#[test]
fn the_request_log_keeps_the_last_requests_and_counts_all() {
    let server = start(MockConfig { files: 5, log_limit: 3, ..MockConfig::default() });
    let mut client = Client::new(&server);
    for n in 1..=5 {
        client.get(&results(&server, &format!("limit={n}")));
    }
    let queries: Vec<_> = server.requests().into_iter().map(|r| r.query).collect();
    assert_eq!(queries, ["limit=3", "limit=4", "limit=5"]);
    assert_eq!(server.requests_total(), 5);
    server.clear_requests();
    client.get(&results(&server, ""));
    assert_eq!((server.requests().len(), server.requests_total()), (1, 6));
    let silent = start(MockConfig { log_limit: 0, ..MockConfig::default() });
    Client::new(&silent).get(&results(&silent, ""));
    assert_eq!((silent.requests().len(), silent.requests_total()), (0, 1));
}

#[test]
fn a_batch_read_while_it_changes() {
    let server = start(MockConfig::default());
    let spec = BatchSpec {
        files: 6,
        grow_per_request: 2,
        grow_at: GrowAt::Front,
        complete_per_request: 1,
        statuses: Some(vec![("processing".to_string(), 1.0)]),
        ..BatchSpec::default()
    };
    let id = server.add_batch(spec).unwrap();
    let mut client = Client::new(&server);
    let ids = |v: &Value| -> Vec<String> {
        v["files"].as_array().unwrap().iter().map(|f| f["file_id"].as_str().unwrap().to_string()).collect()
    };
    let first = client.get(&format!("/transcribe/results/batch/{id}?status=processing")).json();
    let second = client.get(&format!("/transcribe/results/batch/{id}?status=processing")).json();
    let (a, b) = (ids(&first), ids(&second));
    assert_eq!(a.len(), 6);
    // The first file completed, two new ones came in front.
    assert_eq!(b[2..], a[1..]);
    let all = client.get(&format!("/transcribe/results/batch/{id}")).json();
    // Two more came in front of those, and the first of them completed.
    assert_eq!(ids(&all)[2..4], b[..2]);
    assert_eq!(
        (all["files"][2]["status"].as_str(), all["files"][3]["status"].as_str()),
        (Some("completed"), Some("processing"))
    );
    assert_eq!(all["files"][4]["file_id"].as_str(), Some(a[0].as_str()));
    assert_eq!(all["files"][4]["status"], "completed");
    let status = client.get(&format!("/transcribe/status/batch/{id}")).json();
    assert_eq!((status["total_files"].as_u64(), status["files_completed"].as_u64()), (Some(12), Some(3)));
    assert!(server.add_batch(BatchSpec { processing_seconds: Some(-1.0), ..BatchSpec::default() }).is_err());
    assert!(server
        .add_batch(BatchSpec { statuses: Some(vec![("done".to_string(), 1.0)]), ..BatchSpec::default() })
        .is_err());
}
