//! The records jiter refuses but Python's `json` reads: lone surrogate escapes (`"\ud83d"`,
//! what JavaScript writes for a string cut mid-emoji) and nesting deeper than jiter's 200
//! levels. Such a record is read again here, iteratively (any depth, no recursion), and must
//! otherwise be valid JSON. Rare, so written for clarity rather than speed.

use super::id_hash;

pub(super) struct LenientRecord {
    pub end: usize,
    pub key: Option<u64>,
    pub lone_surrogates: bool,
}

/// The record starting at `at` (whitespace allowed before it), or None if it is not JSON.
pub(super) fn read_record(body: &[u8], at: usize, id_field: &str) -> Option<LenientRecord> {
    let mut reader = Reader { body, at, lone_surrogates: false };
    let mut open: Vec<u8> = Vec::new(); // the brackets around the current value
    let mut key = None;
    let mut is_id = false;
    loop {
        // A value.
        match reader.skip_ws()? {
            b'{' | b'[' => {
                let bracket = reader.take();
                let close = if bracket == b'{' { b'}' } else { b']' };
                if reader.skip_ws()? == close {
                    reader.at += 1;
                } else {
                    open.push(bracket);
                    if bracket == b'{' {
                        is_id = reader.member_key(open.len() == 1, id_field)?;
                    }
                    continue;
                }
            }
            b'"' => {
                let text = reader.string(is_id)?;
                if is_id {
                    key = text.map(|t| id_hash(&t));
                }
            }
            b't' => reader.literal(b"true")?,
            b'f' => reader.literal(b"false")?,
            b'n' => reader.literal(b"null")?,
            _ => reader.number()?,
        }
        is_id = false;
        // What follows it: a closing bracket (then what follows that), or the next member.
        loop {
            let Some(&bracket) = open.last() else {
                return Some(LenientRecord { end: reader.at, key, lone_surrogates: reader.lone_surrogates });
            };
            let close = if bracket == b'{' { b'}' } else { b']' };
            match reader.skip_ws()? {
                b',' => {
                    reader.at += 1;
                    if bracket == b'{' {
                        is_id = reader.member_key(open.len() == 1, id_field)?;
                    }
                    break;
                }
                b if b == close => {
                    reader.at += 1;
                    open.pop();
                }
                _ => return None,
            }
        }
    }
}

struct Reader<'a> {
    body: &'a [u8],
    at: usize,
    lone_surrogates: bool,
}

impl Reader<'_> {
    fn skip_ws(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.body.get(self.at) {
            self.at += 1;
        }
        self.body.get(self.at).copied()
    }

    fn take(&mut self) -> u8 {
        self.at += 1;
        self.body[self.at - 1]
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.body[self.at..].starts_with(word).then(|| self.at += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        self.eat(b"-");
        match self.body.get(self.at)? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.eat(b".") {
            self.digits()?;
        }
        if self.eat(b"eE") {
            self.eat(b"+-");
            self.digits()?;
        }
        Some(())
    }

    fn eat(&mut self, any_of: &[u8]) -> bool {
        let found = self.body.get(self.at).is_some_and(|b| any_of.contains(b));
        self.at += found as usize;
        found
    }

    fn digits(&mut self) -> Option<()> {
        let start = self.at;
        while self.body.get(self.at).is_some_and(u8::is_ascii_digit) {
            self.at += 1;
        }
        (self.at > start).then_some(())
    }

    /// A member's key and its colon; true if it is the record's id field.
    fn member_key(&mut self, top_level: bool, id_field: &str) -> Option<bool> {
        if self.skip_ws()? != b'"' {
            return None;
        }
        let text = self.string(top_level)?;
        if self.skip_ws()? != b':' {
            return None;
        }
        self.at += 1;
        Some(text.is_some_and(|t| t == id_field))
    }

    /// The string whose `"` is next; its text (lone surrogates as U+FFFD) only if `wanted`.
    fn string(&mut self, wanted: bool) -> Option<Option<String>> {
        let start = self.at;
        self.at += 1;
        loop {
            match *self.body.get(self.at)? {
                b'"' => break,
                b'\\' => {
                    self.at += 1;
                    match *self.body.get(self.at)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => self.at += 1,
            }
        }
        self.at += 1;
        let quoted = std::str::from_utf8(&self.body[start..self.at]).ok()?;
        Some(wanted.then(|| unescape(quoted.as_bytes())).flatten())
    }

    /// After `\u`: four hex digits, and a low surrogate's after a high one, or it is lone.
    fn unicode_escape(&mut self) -> Option<()> {
        let unit = hex4(self.body.get(self.at + 1..self.at + 5)?)?;
        self.at += 5;
        if (0xD800..0xDC00).contains(&unit) {
            let low = self.body.get(self.at..self.at + 6).filter(|s| s.starts_with(b"\\u")).and_then(|s| hex4(&s[2..]));
            if low.is_some_and(|low| (0xDC00..0xE000).contains(&low)) {
                self.at += 6;
                return Some(());
            }
            self.lone_surrogates = true;
        } else if (0xDC00..0xE000).contains(&unit) {
            self.lone_surrogates = true;
        }
        Some(())
    }
}

fn hex4(digits: &[u8]) -> Option<u16> {
    u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok().filter(|_| digits.iter().all(u8::is_ascii_hexdigit))
}

/// The text of a JSON string (quotes included), each lone surrogate read as U+FFFD.
pub fn unescape(quoted: &[u8]) -> Option<String> {
    match serde_json::from_slice::<String>(quoted) {
        Ok(text) => Some(text),
        Err(_) => serde_json::from_slice(&without_lone_surrogates(quoted)).ok(),
    }
}

/// `json` with each lone surrogate escape written `\ufffd` (U+FFFD, the replacement character),
/// for readers that refuse them (Arrow strings are UTF-8, and hold no surrogate).
pub fn without_lone_surrogates(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut i = 0;
    while i < json.len() {
        if json[i] != b'\\' {
            out.push(json[i]);
            i += 1;
            continue;
        }
        let unit = json.get(i + 1).filter(|&&b| b == b'u').and_then(|_| json.get(i + 2..i + 6)).and_then(hex4);
        let Some(unit) = unit else {
            out.extend_from_slice(&json[i..(i + 2).min(json.len())]); // any other escape, whole
            i += 2;
            continue;
        };
        let low = json.get(i + 6..i + 12).filter(|s| s.starts_with(b"\\u")).and_then(|s| hex4(&s[2..]));
        let paired = (0xD800..0xDC00).contains(&unit) && low.is_some_and(|l| (0xDC00..0xE000).contains(&l));
        let (len, lone) = match unit {
            _ if paired => (12, false),
            0xD800..=0xDFFF => (6, true),
            _ => (6, false),
        };
        if lone {
            out.extend_from_slice(b"\\ufffd");
        } else {
            out.extend_from_slice(&json[i..i + len]);
        }
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: impl AsRef<[u8]>) -> Option<(usize, Option<u64>, bool)> {
        read_record(json.as_ref(), 0, "file_id").map(|r| (r.end, r.key, r.lone_surrogates))
    }

    #[test]
    fn reads_what_python_reads() {
        let cut = r#"{"file_id":"a","t":"cut \ud83d","k":[1,-2.5e3,true,null,{"\udc00":"x"}]}"#;
        assert_eq!(read(cut), Some((cut.len(), Some(id_hash("a")), true)));
        let paired = r#" {"t":"\ud83d\ude00","file_id":"\ud83d"} ,"#;
        assert_eq!(read(paired), Some((paired.len() - 2, Some(id_hash("\u{FFFD}")), true)));
        let deep = format!(r#"{{"d":{}0{},"file_id":"b"}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(read(&deep), Some((deep.len(), Some(id_hash("b")), false)));
        assert_eq!(read(r#"{"x":{"file_id":"nested"}}"#).unwrap().1, None, "only the top-level id");
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "[01]",
            "[1.]",
            "[-]",
            "[1e]",
            "[tru]",
            "[\"\\x\"]",
            "[\"\\u12\"]",
            "[\"a\nb\"]",
            "{1:2}",
            "[1}",
            "{\"a\":1]",
        ] {
            assert!(read(bad).is_none(), "{bad:?}");
        }
        assert!(read(b"[\"\xff\"]").is_none(), "not UTF-8");
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let json = br#"{"a\ud83d":"x\udc00y \ud83d\ude00 \\ud83d \u00e9"}"#;
        assert_eq!(
            String::from_utf8(without_lone_surrogates(json)).unwrap(),
            r#"{"a\ufffd":"x\ufffdy \ud83d\ude00 \\ud83d \u00e9"}"#
        );
        assert_eq!(unescape(br#""cut \ud83d""#).as_deref(), Some("cut \u{FFFD}"));
    }
}
