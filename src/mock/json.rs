//! Writing JSON by hand into a byte buffer: the hot path of every page the mock serves.

/// Appends `s` as a JSON string literal, escaping quotes, backslashes and control characters.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends an unsigned integer in decimal (u128 so that big integers can be written too).
pub(crate) fn push_uint(out: &mut Vec<u8>, mut v: u128) {
    let mut buf = [0u8; 40];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `scaled / 10^decimals` as a decimal number with exactly `decimals` digits
/// after the point: `push_fixed(out, 655, 1)` writes `65.5`. Exact, unlike float formatting.
pub(crate) fn push_fixed(out: &mut Vec<u8>, scaled: u64, decimals: u32) {
    let div = 10u64.pow(decimals);
    push_uint(out, u128::from(scaled / div));
    out.push(b'.');
    let frac = scaled % div;
    let mut d = div / 10;
    while d > 0 {
        out.push(b'0' + ((frac / d) % 10) as u8);
        d /= 10;
    }
}

/// Appends a UTC timestamp given in milliseconds since the epoch as ISO 8601,
/// e.g. `"2025-01-06T00:00:01.500Z"` (quotes included).
pub(crate) fn push_timestamp(out: &mut Vec<u8>, epoch_ms: u64) {
    let secs = epoch_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    out.push(b'"');
    pad(out, y as u64, 4);
    out.push(b'-');
    pad(out, m, 2);
    out.push(b'-');
    pad(out, d, 2);
    out.push(b'T');
    pad(out, sod / 3600, 2);
    out.push(b':');
    pad(out, sod / 60 % 60, 2);
    out.push(b':');
    pad(out, sod % 60, 2);
    out.push(b'.');
    pad(out, epoch_ms % 1000, 3);
    out.extend_from_slice(b"Z\"");
}

fn pad(out: &mut Vec<u8>, v: u64, width: u32) {
    let mut d = 10u64.pow(width - 1);
    while d > 0 {
        out.push(b'0' + ((v / d) % 10) as u8);
        d /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_round_trip_through_serde_json() {
        for text in ["plain", "quote \" back \\ slash", "nl\n\r\t\u{8}\u{c}\u{1}\u{1f}", "हिंदी 会议 🎙️ été", ""]
        {
            let written = s(|o| push_str(o, text));
            let parsed: String = serde_json::from_str(&written).unwrap();
            assert_eq!(parsed, text);
        }
    }

    #[test]
    fn numbers_are_exact() {
        assert_eq!(s(|o| push_uint(o, 0)), "0");
        assert_eq!(s(|o| push_uint(o, u128::from(u64::MAX) + 1)), "18446744073709551616");
        assert_eq!(s(|o| push_fixed(o, 655, 1)), "65.5");
        assert_eq!(s(|o| push_fixed(o, 7, 2)), "0.07");
        assert_eq!(s(|o| push_fixed(o, 300, 1)), "30.0");
    }

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(s(|o| push_timestamp(o, 0)), "\"1970-01-01T00:00:00.000Z\"");
        assert_eq!(s(|o| push_timestamp(o, 1_736_121_600_000 + 1_500)), "\"2025-01-06T00:00:01.500Z\"");
        assert_eq!(s(|o| push_timestamp(o, 1_709_210_096_789)), "\"2024-02-29T12:34:56.789Z\"");
    }
}
