//! The vocabulary of the mock's records, kept as data (`words.txt`, a `[list]` header then one
//! entry a line) and read at compile time into arrays of known length: read at run time
//! instead, every record took 8% longer to write.

const WORDS: &str = include_str!("words.txt");
pub(crate) const HINDI: [&str; list_len("hindi")] = list("hindi");
pub(crate) const ENGLISH: [&str; list_len("english")] = list("english");
pub(crate) const ASCII_STEMS: [&str; list_len("ascii_stems")] = list("ascii_stems");
pub(crate) const HINDI_STEMS: [&str; list_len("hindi_stems")] = list("hindi_stems");
pub(crate) const FRENCH_STEMS: [&str; list_len("french_stems")] = list("french_stems");
pub(crate) const CJK_STEMS: [&str; list_len("cjk_stems")] = list("cjk_stems");
pub(crate) const EMOJI_STEMS: [&str; list_len("emoji_stems")] = list("emoji_stems");

/// Where the line starting at byte `at` of `words.txt` ends.
const fn line_end(at: usize) -> usize {
    let bytes = WORDS.as_bytes();
    let mut end = at;
    while end < bytes.len() && bytes[end] != b'\n' {
        end += 1;
    }
    end
}

/// Whether bytes `at..end` of `words.txt` are the header `[name]`.
const fn is_header(at: usize, end: usize, name: &str) -> bool {
    let (bytes, name) = (WORDS.as_bytes(), name.as_bytes());
    if end - at != name.len() + 2 || bytes[at] != b'[' || bytes[end - 1] != b']' {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if bytes[at + 1 + i] != name[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The bytes of `words.txt` under the header `[name]`, up to the next header.
const fn section(name: &str) -> (usize, usize) {
    let bytes = WORDS.as_bytes();
    let (mut at, mut start) = (0, None);
    while at < bytes.len() {
        let end = line_end(at);
        if at < end && bytes[at] == b'[' {
            if let Some(start) = start {
                return (start, at);
            }
            if is_header(at, end, name) {
                start = Some(end + 1);
            }
        }
        at = end + 1;
    }
    match start {
        Some(start) => (start, bytes.len()),
        None => panic!("a list is missing from words.txt"),
    }
}

/// Whether the line `at..end` is an entry (not blank, not a `#` comment).
const fn is_entry(at: usize, end: usize) -> bool {
    at < end && WORDS.as_bytes()[at] != b'#'
}

const fn list_len(name: &str) -> usize {
    let (mut at, end) = section(name);
    let mut count = 0;
    while at < end {
        let line = line_end(at);
        count += is_entry(at, line) as usize;
        at = line + 1;
    }
    count
}

const fn list<const N: usize>(name: &str) -> [&'static str; N] {
    let (mut at, end) = section(name);
    let mut out = [""; N];
    let mut n = 0;
    while at < end {
        let line = line_end(at);
        if is_entry(at, line) {
            let (_, tail) = WORDS.as_bytes().split_at(at);
            let (entry, _) = tail.split_at(line - at);
            out[n] = match std::str::from_utf8(entry) {
                Ok(text) => text,
                Err(_) => panic!("words.txt is not UTF-8"),
            };
            n += 1;
        }
        at = line + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_is_read_whole() {
        assert_eq!((HINDI.len(), ENGLISH.len(), ASCII_STEMS.len(), EMOJI_STEMS.len()), (178, 169, 13, 4));
        assert_eq!((HINDI[0], ENGLISH[168], EMOJI_STEMS[0]), ("है", "PAN", "voice note 🎙️"));
        assert_eq!((FRENCH_STEMS[1], CJK_STEMS[4], HINDI_STEMS[4]), ("entretien été", "회의록", "किसान_हेल्पलाइन"));
        let lines = WORDS.lines().filter(|l| !l.is_empty() && !l.starts_with(['#', '['])).count();
        let lists = [&HINDI[..], &ENGLISH, &ASCII_STEMS, &HINDI_STEMS, &FRENCH_STEMS, &CJK_STEMS, &EMOJI_STEMS];
        assert_eq!(lists.iter().map(|l| l.len()).sum::<usize>(), lines);
    }
}
