//! The query string of the results endpoint, validated as the real (FastAPI) service does:
//! every bad parameter is reported at once in a 422 `{"detail": [...]}` body.

use percent_encoding::percent_decode_str;
use serde_json::{json, Value};

use super::data::{status_index, STATUS_NAMES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ResultsQuery {
    pub status: Option<u8>,
    pub page: u64,
    pub limit: u64,
    pub raw: bool,
    pub chunks: bool,
    pub speech_information: bool,
}

pub(crate) const MAX_LIMIT: u64 = 200;

/// `a=1&b=x%20y` to decoded pairs (`+` is a space, as in HTML forms).
pub(crate) fn pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

fn error(name: &str, kind: &str, msg: &str, input: &str, ctx: Option<Value>) -> Value {
    let mut e = json!({"type": kind, "loc": ["query", name], "msg": msg, "input": input});
    if let Some(ctx) = ctx {
        e["ctx"] = ctx;
    }
    e
}

/// pydantic's lax bool parsing.
fn parse_bool(name: &str, v: &str, errors: &mut Vec<Value>) -> bool {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" | "t" | "y" => true,
        "false" | "0" | "no" | "off" | "f" | "n" => false,
        _ => {
            errors.push(error(
                name,
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
                v,
                None,
            ));
            false
        }
    }
}

/// An integer within `min..=max` (a huge one saturates: it is still a valid page number).
fn parse_int(name: &str, v: &str, min: u64, max: Option<u64>, errors: &mut Vec<Value>) -> u64 {
    let t = v.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        errors.push(error(
            name,
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            v,
            None,
        ));
        return min;
    }
    let negative = t.starts_with('-') && digits.bytes().any(|b| b != b'0');
    let n = if negative { 0 } else { digits.parse::<u64>().unwrap_or(u64::MAX) };
    if negative || n < min {
        errors.push(error(
            name,
            "greater_than_equal",
            &format!("Input should be greater than or equal to {min}"),
            v,
            Some(json!({"ge": min})),
        ));
    } else if let Some(max) = max.filter(|&m| n > m) {
        errors.push(error(
            name,
            "less_than_equal",
            &format!("Input should be less than or equal to {max}"),
            v,
            Some(json!({"le": max})),
        ));
    }
    n
}

/// Parses the results endpoint's query; `Err` holds the 422 body.
pub(crate) fn parse_results_query(query: &str) -> Result<ResultsQuery, Value> {
    let mut q = ResultsQuery { status: None, page: 1, limit: 50, raw: false, chunks: false, speech_information: false };
    let mut errors = Vec::new();
    for (name, value) in pairs(query) {
        match name.as_str() {
            "status" => {
                q.status = status_index(&value);
                if q.status.is_none() {
                    let expected = format!(
                        "'{}', '{}', '{}' or '{}'",
                        STATUS_NAMES[0], STATUS_NAMES[1], STATUS_NAMES[2], STATUS_NAMES[3]
                    );
                    errors.push(error(
                        "status",
                        "enum",
                        &format!("Input should be {expected}"),
                        &value,
                        Some(json!({"expected": expected})),
                    ));
                }
            }
            "page" => q.page = parse_int("page", &value, 1, None, &mut errors),
            "limit" => q.limit = parse_int("limit", &value, 1, Some(MAX_LIMIT), &mut errors),
            "raw" => q.raw = parse_bool("raw", &value, &mut errors),
            "chunks" => q.chunks = parse_bool("chunks", &value, &mut errors),
            "speech_information" => q.speech_information = parse_bool("speech_information", &value, &mut errors),
            _ => {} // unknown parameters are ignored, as FastAPI does
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(json!({ "detail": errors }))
    }
}

/// The options of the one-file endpoint (`chunks`, `speech_information`); `Err` holds the 422 body.
pub(crate) fn parse_file_query(query: &str) -> Result<(bool, bool), Value> {
    let (mut chunks, mut speech_information) = (false, false);
    let mut errors = Vec::new();
    for (name, value) in pairs(query) {
        match name.as_str() {
            "chunks" => chunks = parse_bool("chunks", &value, &mut errors),
            "speech_information" => speech_information = parse_bool("speech_information", &value, &mut errors),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((chunks, speech_information))
    } else {
        Err(json!({ "detail": errors }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locs(body: &Value) -> Vec<String> {
        body["detail"].as_array().unwrap().iter().map(|e| e["loc"][1].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn defaults() {
        let q = parse_results_query("").unwrap();
        assert_eq!(
            q,
            ResultsQuery { status: None, page: 1, limit: 50, raw: false, chunks: false, speech_information: false }
        );
    }

    #[test]
    fn parses_every_parameter() {
        let q = parse_results_query("status=failed&page=3&limit=200&raw=true&chunks=1&speech_information=True&extra=x")
            .unwrap();
        assert_eq!(
            q,
            ResultsQuery { status: Some(1), page: 3, limit: 200, raw: true, chunks: true, speech_information: true }
        );
        assert_eq!(parse_results_query("page=99999999999999999999999").unwrap().page, u64::MAX);
        assert_eq!(parse_results_query("limit=%2B1").unwrap().limit, 1);
    }

    #[test]
    fn reports_every_invalid_parameter() {
        let body = parse_results_query("status=done&page=0&limit=201&raw=maybe&chunks=2&speech_information=&page=x")
            .unwrap_err();
        assert_eq!(locs(&body), ["status", "page", "limit", "raw", "chunks", "speech_information", "page"]);
        assert_eq!(body["detail"][2]["type"], "less_than_equal");
        assert_eq!(body["detail"][2]["ctx"]["le"], 200);
        assert_eq!(body["detail"][1]["type"], "greater_than_equal");
        for bad in ["limit=0", "limit=-5", "limit=1.5", "limit=", "page=-1", "status=COMPLETED"] {
            assert!(parse_results_query(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_query_takes_its_two_options() {
        assert_eq!(parse_file_query("").unwrap(), (false, false));
        assert_eq!(parse_file_query("chunks=true&speech_information=1&page=0").unwrap(), (true, true));
        assert_eq!(
            locs(&parse_file_query("chunks=x&speech_information=2").unwrap_err()),
            ["chunks", "speech_information"]
        );
    }

    #[test]
    fn decodes_pairs() {
        let got: Vec<_> = pairs("a=x%20y+z&b&=c&&d=%E0%A4%B9").collect();
        let want = [("a", "x y z"), ("b", ""), ("", "c"), ("d", "ह")];
        assert_eq!(got, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
