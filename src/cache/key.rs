//! What decides an entry's records, and so its name: the service, the batch, the query's
//! parameters and the account (a keyed hash of the token, never the token).

use serde::{Deserialize, Serialize};
use url::Url;

use crate::query::Query;

/// The identity of an entry. Pages of another size are another entry: an entry is a list of
/// pages as the service cut them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryKey {
    pub base_url: String,
    pub batch_id: String,
    pub limit: u32,
    pub raw: bool,
    pub status: Option<String>,
    pub chunks: Option<bool>,
    pub speech_information: Option<bool>,
    /// `Secret::token_id` of the token the pages were read with.
    pub token_id: String,
}

impl EntryKey {
    pub fn new(base_url: &Url, query: &Query, token_id: String) -> EntryKey {
        EntryKey {
            base_url: base_url.as_str().to_owned(),
            batch_id: query.batch_id.clone(),
            limit: query.limit,
            raw: query.raw,
            status: query.status.map(|s| s.as_str().to_owned()),
            chunks: query.chunks,
            speech_information: query.speech_information,
            token_id,
        }
    }
}

/// A random key made once per cache directory: hashes keyed by it identify a token (and name
/// entries) in that directory only, and reveal nothing of the token elsewhere.
#[derive(Clone)]
pub struct Secret([u8; 32]);

impl Secret {
    pub fn new(bytes: [u8; 32]) -> Secret {
        Secret(bytes)
    }

    /// Who read the pages: equal for one token, unrelated for two, useless without the key.
    pub fn token_id(&self, token: &str) -> String {
        self.hash(b"token", token.as_bytes())
    }

    /// The entry's file name (without extension).
    pub fn entry_name(&self, key: &EntryKey) -> String {
        let canonical = serde_json::to_vec(key).expect("a key serializes");
        self.hash(b"entry", &canonical)
    }

    fn hash(&self, domain: &[u8], data: &[u8]) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(domain).update(b"\0").update(data);
        hasher.finalize().to_hex().to_string()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Status;

    fn key(secret: &Secret, token: &str, query: &Query) -> EntryKey {
        EntryKey::new(&Url::parse("http://127.0.0.1:8/api").unwrap(), query, secret.token_id(token))
    }

    #[test]
    fn every_parameter_and_the_token_name_another_entry() {
        let secret = Secret::new([7; 32]);
        let query = Query::new("b");
        let name = |k: &EntryKey| secret.entry_name(k);
        let base = name(&key(&secret, "t", &query));
        assert_eq!(base, name(&key(&secret, "t", &query.with_page(9))), "the page is not part of the key");
        let others = [
            key(&secret, "t2", &query),
            key(&secret, "t", &Query { batch_id: "c".into(), ..query.clone() }),
            key(&secret, "t", &Query { limit: 51, ..query.clone() }),
            key(&secret, "t", &Query { raw: true, ..query.clone() }),
            key(&secret, "t", &Query { status: Some(Status::Failed), ..query.clone() }),
            key(&secret, "t", &Query { chunks: Some(false), ..query.clone() }),
            key(&secret, "t", &Query { speech_information: Some(true), ..query.clone() }),
            EntryKey { base_url: "http://127.0.0.1:9/api".into(), ..key(&secret, "t", &query) },
        ];
        for other in &others {
            assert_ne!(name(other), base, "{other:?}");
        }
    }

    #[test]
    fn the_token_id_depends_on_the_secret_and_holds_no_token() {
        let token = "eyJhbGciOi.secret-token";
        let (a, b) = (Secret::new([1; 32]), Secret::new([2; 32]));
        assert_eq!(a.token_id(token), a.token_id(token));
        assert_ne!(a.token_id(token), b.token_id(token), "useless in another directory");
        assert_ne!(a.token_id(token), a.token_id("other"));
        assert!(!a.token_id(token).contains("secret"));
        assert_eq!(format!("{a:?}"), "Secret(***)");
    }
}
