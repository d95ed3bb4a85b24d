//! The upstream side: requests forwarded unchanged, answers streamed back,
//! and bounded reads of the answers a search needs to see.
//!
//! "Unchanged" means method, path, query string, body (streamed, never
//! buffered) and every end-to-end header. Hop-by-hop headers (RFC 9110
//! §7.6.1: `Connection` and the headers it names, `Keep-Alive`,
//! `Transfer-Encoding`, `TE`, `Trailer`, `Upgrade`, `Proxy-*`) and `Host`
//! belong to one connection and are dropped; the HTTP stacks on each side
//! set their own.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;

use super::{Proxy, ProxyError};

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `headers` without hop-by-hop headers, those `Connection` names, `Host`,
/// and (when the body is rewritten) `Content-Length`.
pub(super) fn end_to_end(headers: &HeaderMap, keep_length: bool) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || named.iter().any(|c| c == n)
            || name == header::HOST
            || (!keep_length && name == header::CONTENT_LENGTH)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

impl Proxy {
    /// The upstream URL of a request's path and query: the configured
    /// scheme, host and port, always. A path is appended as text (never
    /// resolved as a reference), so `//other.host/x` stays a path.
    pub(super) fn upstream_url(&self, path: &str, query: Option<&str>) -> reqwest::Url {
        let base = &self.inner.config.upstream;
        let mut url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        url.set_path(&format!("{prefix}{path}"));
        url.set_query(query.filter(|q| !q.is_empty()));
        url
    }

    /// Send one request upstream; an unreachable upstream is a `502`.
    pub(super) async fn send(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, ProxyError> {
        self.inner
            .client
            .request(method, url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_connect() {
                    "cannot connect to the upstream"
                } else if e.is_timeout() {
                    "the upstream timed out"
                } else {
                    "the upstream request failed"
                };
                ProxyError::new(
                    StatusCode::BAD_GATEWAY,
                    "nboost_upstream_unavailable",
                    format!("{what} ({}): {}", self.inner.config.upstream, root(&e)),
                )
            })
    }
}

/// The innermost cause of an error (reqwest's outer message says little).
fn root(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Forward `req` unchanged and stream the answer back.
pub(super) async fn passthrough(proxy: &Proxy, req: Request) -> Result<Response, ProxyError> {
    let (parts, body) = req.into_parts();
    let url = proxy.upstream_url(parts.uri.path(), parts.uri.query());
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let body = if has_body {
        reqwest::Body::wrap_stream(body.into_data_stream())
    } else {
        reqwest::Body::from(Bytes::new())
    };
    let answer = proxy
        .send(
            parts.method,
            url,
            end_to_end(&parts.headers, has_body),
            body,
        )
        .await?;
    Ok(stream_back(answer, None))
}

/// An upstream answer as the proxy's, its body streamed. `extra` headers
/// are added.
pub(super) fn stream_back(
    answer: reqwest::Response,
    extra: Option<(HeaderName, String)>,
) -> Response {
    let status = answer.status();
    let mut headers = end_to_end(answer.headers(), true);
    if let Some((name, value)) = extra {
        if let Ok(v) = value.parse() {
            headers.insert(name, v);
        }
    }
    let stream = answer.bytes_stream().map_err(std::io::Error::other);
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// An answer read into memory, or word that it was over the cap (what was
/// read is dropped at once).
pub(super) enum Read {
    Whole(reqwest::StatusCode, HeaderMap, Bytes),
    TooLarge,
}

/// Read at most `cap` bytes of an answer's body.
pub(super) async fn read_bounded(
    mut answer: reqwest::Response,
    cap: usize,
) -> Result<Read, ProxyError> {
    if answer.content_length().is_some_and(|n| n as usize > cap) {
        return Ok(Read::TooLarge);
    }
    let mut buf = BytesMut::new();
    loop {
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                buf.extend_from_slice(&chunk);
                if buf.len() > cap {
                    return Ok(Read::TooLarge);
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(ProxyError::new(
                    StatusCode::BAD_GATEWAY,
                    "nboost_upstream_unavailable",
                    format!("the upstream answer broke off: {}", root(&e)),
                ))
            }
        }
    }
    Ok(Read::Whole(
        answer.status(),
        end_to_end(answer.headers(), false),
        buf.freeze(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Service, ServiceOptions};

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("host", "evil".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        h.insert("authorization", "Basic x".parse().unwrap());
        let out = end_to_end(&h, false);
        assert_eq!(
            out.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["authorization"]
        );
        assert!(end_to_end(&h, true).contains_key("content-length"));
    }

    fn proxy(base: &str) -> Proxy {
        let manifest = crate::registry::Manifest::parse("", std::path::Path::new("."))
            .expect("an empty manifest");
        let engine = crate::sandbox::SandboxEngine::new(Default::default()).unwrap();
        let nn = std::sync::Arc::new(crate::nn::NnHost::new(
            Default::default(),
            manifest.graphs.clone(),
        ));
        let registry =
            crate::registry::Registry::new(std::sync::Arc::new(engine), nn, manifest, None)
                .unwrap();
        let service = Service::operator_only(registry, ServiceOptions::default());
        let config = super::super::ProxyConfig::new(base.parse().unwrap(), "lexical");
        Proxy::new(config, std::sync::Arc::new(service)).unwrap()
    }

    #[test]
    fn a_request_cannot_move_the_upstream() {
        let p = proxy("http://127.0.0.1:9200/prefix/");
        for path in ["//evil.example/x", "/@evil.example/x", "/../../x", "x"] {
            let url = p.upstream_url(path, Some("a=1"));
            assert_eq!(url.host_str(), Some("127.0.0.1"), "{path}");
            assert_eq!(url.port(), Some(9200), "{path}");
        }
        assert_eq!(
            p.upstream_url("/i/_doc/1", None).as_str(),
            "http://127.0.0.1:9200/prefix/i/_doc/1"
        );
    }
}
