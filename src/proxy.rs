//! Proxies from the environment, read as curl reads them (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY`, upper case first), with three rules of ours:
//! - a value that is set but not a proxy URL is an error naming the variable (the client would
//!   otherwise connect directly, and a user who must go through the proxy is not told);
//! - `NO_PROXY=*` exempts every host, IP addresses too (hyper-util's matcher applies `*` to
//!   domain names only);
//! - a plain-http request never goes through a proxy off loopback: the bearer token would travel
//!   in clear to it. Such a request goes direct (plain http is only allowed to loopback hosts).

use std::net::IpAddr;

use url::Url;

use crate::error::{Error, Result};

/// A proxy, and the variable that named it (for messages).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyUrl {
    pub url: Url,
    pub var: &'static str,
}

impl ProxyUrl {
    /// `http://host:port (from HTTPS_PROXY)`: credentials left out.
    pub fn shown(&self) -> String {
        let host = self.url.host_str().unwrap_or("");
        match self.url.port_or_known_default() {
            Some(port) => format!("{}://{host}:{port} (from {})", self.url.scheme(), self.var),
            None => format!("{}://{host} (from {})", self.url.scheme(), self.var),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Proxies {
    http: Option<ProxyUrl>,
    https: Option<ProxyUrl>,
    /// `NO_PROXY`'s entries, lower case, leading dots removed.
    exempt: Vec<String>,
}

impl Proxies {
    pub fn from_env() -> Result<Proxies> {
        Proxies::from_vars(|name| std::env::var(name).ok())
    }

    /// The proxies named by the variables `var` returns.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Proxies> {
        let first = |names: [&'static str; 2]| -> Result<Option<ProxyUrl>> {
            // An empty value means unset, as for curl.
            match names.into_iter().find_map(|n| var(n).filter(|v| !v.is_empty()).map(|v| (n, v))) {
                Some((name, value)) => parse_proxy(name, &value).map(Some),
                None => Ok(None),
            }
        };
        let all = first(["ALL_PROXY", "all_proxy"])?;
        let no_proxy = var("NO_PROXY").or_else(|| var("no_proxy")).unwrap_or_default();
        Ok(Proxies {
            http: first(["HTTP_PROXY", "http_proxy"])?.or_else(|| all.clone()),
            https: first(["HTTPS_PROXY", "https_proxy"])?.or(all),
            exempt: no_proxy
                .split(',')
                .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.http.is_none() && self.https.is_none()
    }

    /// The proxy a request to `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&ProxyUrl> {
        let host = url.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase();
        if self.exempt.iter().any(|entry| exempts(entry, &host)) {
            return None;
        }
        match url.scheme() {
            "https" => self.https.as_ref(),
            "http" => self.http.as_ref().filter(|p| is_loopback(&p.url)),
            _ => None,
        }
    }
}

/// A proxy URL as curl takes it (`host:port` means `http://host:port`), refused with the
/// variable's name when it is not one: a space, a control character, another scheme, no host.
fn parse_proxy(name: &'static str, value: &str) -> Result<ProxyUrl> {
    let bad = |why: &str| Error::invalid(format!("{name} is not a usable proxy URL: {why}; fix or unset it"));
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it holds a space or a control character"));
    }
    let full = if value.contains("://") { value.to_owned() } else { format!("http://{value}") };
    let url = Url::parse(&full).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(&format!("the scheme {:?} is not supported (http or https)", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    Ok(ProxyUrl { url, var: name })
}

/// A `NO_PROXY` entry: `*`, an IP address or network (`10.0.0.0/8`), or a domain and its subdomains.
fn exempts(entry: &str, host: &str) -> bool {
    if entry == "*" {
        return true;
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return in_network(ip, entry);
    }
    host == entry || host.strip_suffix(entry).is_some_and(|rest| rest.ends_with('.'))
}

fn in_network(ip: IpAddr, entry: &str) -> bool {
    let (addr, len) = match entry.split_once('/') {
        Some((addr, len)) => match len.parse::<u32>() {
            Ok(len) => (addr, Some(len)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    match (ip, addr.trim_matches(['[', ']']).parse::<IpAddr>()) {
        (IpAddr::V4(a), Ok(IpAddr::V4(b))) => same_prefix(u32::from(a).into(), u32::from(b).into(), 32, len),
        (IpAddr::V6(a), Ok(IpAddr::V6(b))) => same_prefix(a.into(), b.into(), 128, len),
        _ => false,
    }
}

fn same_prefix(a: u128, b: u128, bits: u32, len: Option<u32>) -> bool {
    let shift = bits - len.unwrap_or(bits).min(bits);
    shift >= 128 || a >> shift == b >> shift
}

/// `localhost` or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)]) -> Result<Proxies> {
        Proxies::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    fn via(p: &Proxies, url: &str) -> Option<String> {
        p.for_url(&Url::parse(url).unwrap()).map(ProxyUrl::shown)
    }

    #[test]
    fn each_scheme_has_its_proxy_and_all_proxy_fills_in() {
        let p = proxies(&[("HTTPS_PROXY", "http://127.0.0.1:3128"), ("ALL_PROXY", "localhost:9")]).unwrap();
        assert_eq!(via(&p, "https://api.soket.ai/t").unwrap(), "http://127.0.0.1:3128 (from HTTPS_PROXY)");
        assert_eq!(via(&p, "http://127.0.0.1:8/t").unwrap(), "http://localhost:9 (from ALL_PROXY)");
        let lower = proxies(&[("https_proxy", "http://u:secret@10.0.0.1:8080/")]).unwrap();
        assert_eq!(via(&lower, "https://x/").unwrap(), "http://10.0.0.1:8080 (from https_proxy)");
        assert!(proxies(&[("HTTPS_PROXY", "")]).unwrap().is_empty(), "empty means unset");
    }

    #[test]
    fn plain_http_never_goes_to_a_proxy_off_loopback() {
        let p = proxies(&[("HTTP_PROXY", "http://10.0.0.1:3128"), ("HTTPS_PROXY", "http://0.0.0.0:1")]).unwrap();
        assert_eq!(via(&p, "http://127.0.0.1:8/t"), None);
        assert!(via(&p, "https://api.soket.ai/").is_some(), "the token is inside TLS");
        let local = proxies(&[("HTTP_PROXY", "http://[::1]:3128")]).unwrap();
        assert!(via(&local, "http://localhost:8/t").is_some());
    }

    #[test]
    fn no_proxy_entries() {
        let with = |no: &str| proxies(&[("HTTPS_PROXY", "http://127.0.0.1:1"), ("NO_PROXY", no)]).unwrap();
        for (no, url) in [
            ("*", "https://127.0.0.1/"),
            ("*", "https://[::1]:9/"),
            ("*", "https://api.soket.ai/"),
            ("soket.ai", "https://api.soket.ai/"),
            (" .Soket.AI ,x", "https://api.soket.ai/"),
            ("10.0.0.0/8", "https://10.2.3.4/"),
            ("127.0.0.1", "https://127.0.0.1:8/"),
            ("::1", "https://[::1]:8/"),
            ("0.0.0.0/0", "https://192.0.2.1/"),
        ] {
            assert_eq!(via(&with(no), url), None, "NO_PROXY={no:?} exempts {url}");
        }
        for (no, url) in [
            ("oket.ai", "https://api.soket.ai/"),
            ("10.0.0.0/8", "https://11.0.0.1/"),
            ("10.0.0.0/x", "https://10.0.0.1/"),
            ("127.0.0.1", "https://localhost/"),
        ] {
            assert!(via(&with(no), url).is_some(), "NO_PROXY={no:?} does not exempt {url}");
        }
    }

    #[test]
    fn a_malformed_proxy_is_an_error_naming_the_variable() {
        for (name, value) in [
            ("HTTPS_PROXY", "http://127.0.0.1:8888 "),
            ("HTTP_PROXY", "http://user:pa ss@127.0.0.1:8888"),
            ("ALL_PROXY", "socks5://127.0.0.1:1080"),
            ("https_proxy", "http://127.0.0.1:notaport"),
            ("HTTPS_PROXY", "http://"),
        ] {
            let err = proxies(&[(name, value)]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name} is not a usable proxy URL")), "{err}");
            assert!(!err.contains("pa ss"), "no credentials in the message: {err}");
        }
    }
}
