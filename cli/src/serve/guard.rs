//! The checks every request passes before it reaches a handler, in this order:
//!
//! 1. **Host allow-list (DNS rebinding).** The request's authority (the `Host` header, or the request
//!    target's authority in absolute form) must name this server: the bound address (`IP:port`), and for a
//!    loopback bind `localhost:port`, `127.0.0.1:port` and `[::1]:port`; for a bind on every interface
//!    (`0.0.0.0`, `[::]`) any IP literal on the bound port and `localhost:port`; plus the names the
//!    operator adds ([`HostPattern`], `--allowed-host NAME[:PORT]`; without a port, any port). A page of
//!    `http://evil.example:8080` whose name was rebound to 127.0.0.1 sends `Host: evil.example:8080`, which
//!    is on no list: 421 Misdirected Request. An IP literal cannot be rebound, which is why any IP literal
//!    is fine for a bind on every interface. A missing, repeated or malformed `Host` is a 400.
//! 2. **Cross-site requests (CSRF, login CSRF).** For every method but `GET`, `HEAD`, `OPTIONS` and
//!    `TRACE`, on every route (the demo's forms, sign-in included, and the API): refused (403) when
//!    `Sec-Fetch-Site` is present and neither `same-origin` nor `none`; else when `Origin` is present and
//!    its `host[:port]` is not the request's `Host` (`Origin: null` included); a request with neither
//!    header is not from a browser (browsers send `Origin` on every cross-origin POST, and
//!    `Sec-Fetch-Site` since 2020-2023) and passes. This is the algorithm of Go 1.25's
//!    `http.CrossOriginProtection`. It was chosen over CSRF tokens in the forms because it needs no state
//!    (no token in the session, so a signed-out browser's sign-in form is covered as well: login CSRF),
//!    it protects the API with the same code, and the forms stay plain HTML. The `SameSite=Strict`
//!    session cookie is a second layer: a cross-site request carries no session.
//! 3. **API authentication.** Everything under `/api` (unknown routes included, so the routes are not
//!    revealed) needs `Authorization: Bearer TOKEN` ([`ApiToken`]); otherwise 401 with
//!    `WWW-Authenticate: Bearer` and `{"error": "unauthorized", ...}`. Browsers never attach that header
//!    on their own, so the API cannot be driven cross-site even without step 2. `/openapi.json` and the
//!    demo stay public: the document holds no secret, and the demo is a demo.
//!
//! Every response under `/api` says `Cache-Control: no-store` (some carry tokens).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api::{ApiError, codes};
use super::auth::ApiToken;

/// One name the `Host` header may carry: a DNS name or an IP literal (IPv6 in brackets), lower case, with
/// an optional port (`None`: any port). Parsed from `NAME`, `NAME:PORT`, `IP`, `IP:PORT`, `[IPV6]` or
/// `[IPV6]:PORT`; no wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    name: String,
    port: Option<u16>,
}

impl HostPattern {
    /// The address as a `Host` header names it.
    fn of_address(ip: IpAddr, port: u16) -> Self {
        let name = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        Self {
            name,
            port: Some(port),
        }
    }

    fn is_ip_literal(&self) -> bool {
        self.name.parse::<Ipv4Addr>().is_ok() || self.name.starts_with('[')
    }
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().to_ascii_lowercase();
        let (name, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or("an IPv6 address needs its closing bracket")?;
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| format!("{inside:?} is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                other => Some(other.strip_prefix(':').ok_or("expected :PORT after ]")?),
            };
            (format!("[{ip}]"), port)
        } else {
            match text.split_once(':') {
                Some((_, rest)) if rest.contains(':') => {
                    return Err("put an IPv6 address in brackets, e.g. [::1]:8080".to_owned());
                }
                Some((name, port)) => (name.to_owned(), Some(port)),
                None => (text.clone(), None),
            }
        };
        let port = port
            .map(|p| match p.parse::<u16>() {
                Ok(0) | Err(_) => Err(format!("{p:?} is not a port (1-65535)")),
                Ok(port) => Ok(port),
            })
            .transpose()?;
        let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if !name.starts_with('[')
            && (name.is_empty()
                || name.len() > 253
                || !name.chars().all(is_name_char)
                || name.starts_with(['.', '-']))
        {
            return Err(format!(
                "{name:?} is not a host name (letters, digits, '-', '.'; no wildcards)"
            ));
        }
        Ok(Self { name, port })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The names the `Host` header may carry.
#[derive(Debug, Clone, Default)]
pub(super) struct AllowedHosts {
    patterns: Vec<HostPattern>,
    /// A bind on every interface: any IP literal on this port.
    any_ip_on: Option<u16>,
}

impl AllowedHosts {
    pub(super) fn add(&mut self, pattern: HostPattern) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
        }
    }

    /// What a server bound to `addr` answers for (see the module documentation).
    pub(super) fn add_address(&mut self, addr: SocketAddr) {
        let (ip, port) = (addr.ip(), addr.port());
        if ip.is_unspecified() {
            self.any_ip_on = Some(port);
        } else {
            self.add(HostPattern::of_address(ip, port));
        }
        if ip.is_loopback() || ip.is_unspecified() {
            for name in ["localhost", "127.0.0.1", "[::1]"] {
                self.add(HostPattern {
                    name: name.to_owned(),
                    port: Some(port),
                });
            }
        }
    }

    /// Whether `host` (from the request) is allowed; a `Host` without a port means port 80.
    fn allows(&self, host: &HostPattern) -> bool {
        let port = host.port.unwrap_or(80);
        self.patterns
            .iter()
            .any(|p| p.name == host.name && p.port.is_none_or(|allowed| allowed == port))
            || (self.any_ip_on == Some(port) && host.is_ip_literal())
    }
}

/// What the guard checks against.
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) hosts: AllowedHosts,
    pub(super) api_token: ApiToken,
}

/// Whether `path` belongs to the JSON API (every such route needs the bearer token).
fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Methods that must not change state (and are not checked for cross-site requests).
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The request's authority: the request target's in absolute form, else the one `Host` header.
fn request_host(request: &Request) -> Result<HostPattern, &'static str> {
    if let Some(authority) = request.uri().authority() {
        return authority
            .as_str()
            .parse()
            .map_err(|_| "the request target's host is not valid");
    }
    let mut hosts = request.headers().get_all(HOST).iter();
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return Err("the request needs exactly one Host header");
    };
    host.to_str()
        .ok()
        .and_then(|h| h.parse().ok())
        .ok_or("the Host header is not a valid host")
}

/// Why a state-changing request looks cross-site, or `None` when it does not (see the module
/// documentation).
fn cross_site(headers: &HeaderMap, host: &HostPattern) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => None,
            _ => Some("the browser says this request comes from another site (Sec-Fetch-Site)"),
        };
    }
    let origin = headers.get(ORIGIN)?;
    let same = origin
        .to_str()
        .ok()
        .and_then(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
        })
        .filter(|authority| !authority.contains('/'))
        .and_then(|authority| authority.parse::<HostPattern>().ok())
        .is_some_and(|origin| origin == *host);
    (!same).then_some("the request's Origin is not this server")
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// The middleware: the checks of the module documentation, then the handler.
pub(super) async fn guard(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let api = is_api(request.uri().path());
    let mut response = match refusal(&guard, &request, api) {
        None => next.run(request).await,
        Some(refusal) => refusal,
    };
    if api {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The answer that refuses `request`, or `None` when it may reach the handler.
fn refusal(guard: &Guard, request: &Request, api: bool) -> Option<Response> {
    let host = match request_host(request) {
        Ok(host) => host,
        Err(why) => {
            return Some(refuse(
                api,
                StatusCode::BAD_REQUEST,
                codes::INVALID_REQUEST,
                why,
                "Bad request",
            ));
        }
    };
    if !guard.hosts.allows(&host) {
        return Some(refuse(
            api,
            StatusCode::MISDIRECTED_REQUEST,
            codes::MISDIRECTED_REQUEST,
            "this server does not answer for the host the request names (the operator can add it \
             with --allowed-host)",
            "Wrong host",
        ));
    }
    if !is_safe(request.method())
        && let Some(why) = cross_site(request.headers(), &host)
    {
        return Some(refuse(
            api,
            StatusCode::FORBIDDEN,
            codes::CROSS_SITE_REQUEST,
            why,
            "Refused: this form was sent from another site",
        ));
    }
    if api {
        let challenge = match bearer(request.headers()) {
            Some(token) if guard.api_token.matches(token) => return None,
            Some(_) => r#"Bearer realm="wasm-sessions", error="invalid_token""#,
            None => r#"Bearer realm="wasm-sessions""#,
        };
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "the API needs the header Authorization: Bearer TOKEN with the token serve was started \
             with",
        )
        .into_response();
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        return Some(response);
    }
    None
}

/// A refusal: the API's JSON error under `/api`, the demo's HTML page elsewhere.
fn refuse(api: bool, status: StatusCode, code: &'static str, why: &str, heading: &str) -> Response {
    if api {
        ApiError::new(status, code, why).into_response()
    } else {
        let mut text = why.to_owned();
        if let Some(first) = text.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        super::web::error_page(status, heading, &format!("{text}. Nothing was changed."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> HostPattern {
        text.parse().unwrap()
    }

    #[test]
    fn host_patterns_parse_names_ip_literals_and_ports() {
        assert_eq!(
            host("Example.COM"),
            HostPattern {
                name: "example.com".into(),
                port: None
            }
        );
        assert_eq!(host("example.com:8080").port, Some(8080));
        assert_eq!(host("[::1]:80").name, "[::1]");
        assert_eq!(host("[0:0::1]").name, "[::1]");
        assert_eq!(host("127.0.0.1:9").to_string(), "127.0.0.1:9");
        for bad in [
            "",
            ":80",
            "*.example.com",
            "::1",
            "[::1",
            "[x]",
            "a:0",
            "a:65536",
            "a b",
            "a/b",
            "-a",
            "a:80:80",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_loopback_bind_allows_its_loopback_names_on_its_port_only() {
        let mut hosts = AllowedHosts::default();
        hosts.add_address("127.0.0.1:8080".parse().unwrap());
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(hosts.allows(&host(ok)), "{ok}");
        }
        for refused in [
            "localhost:8081",
            "localhost",
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example:8080",
        ] {
            assert!(!hosts.allows(&host(refused)), "{refused}");
        }
        hosts.add(host("sessions.example.com"));
        assert!(hosts.allows(&host("sessions.example.com")));
        assert!(hosts.allows(&host("sessions.example.com:443")));
        hosts.add(host("admin.example.com:8443"));
        assert!(hosts.allows(&host("admin.example.com:8443")));
        assert!(!hosts.allows(&host("admin.example.com")));
    }

    #[test]
    fn a_bind_on_every_interface_allows_ip_literals_on_its_port_but_no_other_name() {
        let mut hosts = AllowedHosts::default();
        hosts.add_address("0.0.0.0:8080".parse().unwrap());
        for ok in ["192.168.1.5:8080", "[fe80::1]:8080", "localhost:8080"] {
            assert!(hosts.allows(&host(ok)), "{ok}");
        }
        for refused in ["192.168.1.5:8081", "evil.example:8080", "myhost:8080"] {
            assert!(!hosts.allows(&host(refused)), "{refused}");
        }
        let mut specific = AllowedHosts::default();
        specific.add_address("10.0.0.7:80".parse().unwrap());
        assert!(specific.allows(&host("10.0.0.7")), "port 80 by default");
        assert!(!specific.allows(&host("localhost:80")));
    }

    #[test]
    fn cross_site_requests_are_told_by_sec_fetch_site_then_origin() {
        let here = host("localhost:8080");
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let allowed: &[&[(&str, &str)]] = &[
            &[],
            &[("sec-fetch-site", "same-origin")],
            &[("sec-fetch-site", "none")],
            &[("origin", "http://localhost:8080")],
            &[("origin", "https://LOCALHOST:8080")],
            // Sec-Fetch-Site decides when present.
            &[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://other"),
            ],
        ];
        for pairs in allowed {
            assert_eq!(cross_site(&headers(pairs), &here), None, "{pairs:?}");
        }
        let refused: &[&[(&str, &str)]] = &[
            &[("sec-fetch-site", "cross-site")],
            &[("sec-fetch-site", "same-site")],
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "http://localhost:8080"),
            ],
            &[("origin", "http://127.0.0.1:8080")],
            &[("origin", "http://localhost:8081")],
            &[("origin", "http://localhost")],
            &[("origin", "null")],
            &[("origin", "http://localhost:8080/path")],
        ];
        for pairs in refused {
            assert!(cross_site(&headers(pairs), &here).is_some(), "{pairs:?}");
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, "Bearer".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}
