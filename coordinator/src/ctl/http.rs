//! A minimal HTTP/1.1 client for the admin API (loopback or cluster-internal, plain HTTP), so the
//! CLI and the test tools need no HTTP client stack.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};

/// A response: status code, `Location` header if any, body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

/// One request; `body` is sent as JSON.
pub fn request(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let sock = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading {path} from {addr}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed HTTP status line")?;
    let location = head.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
            .map(|(_, v)| v.trim().to_string())
    });
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Response {
        status,
        location,
        body,
    })
}

/// GETs `path` from `addr` (host:port) and returns the body of a 200 response.
pub fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<String> {
    let r = request("GET", addr, path, None, timeout)?;
    if r.status != 200 {
        bail!(
            "GET {path} from {addr}: HTTP {}: {}",
            r.status,
            r.body.trim()
        );
    }
    Ok(r.body)
}

/// POSTs JSON, following one 307 redirect (a follower pointing at the leader).
pub fn post_json(
    addr: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let r = request("POST", addr, path, Some(body), timeout)?;
    match (r.status, &r.location) {
        (307, Some(loc)) => {
            let rest = loc.strip_prefix("http://").unwrap_or(loc);
            let (host, p) = rest
                .split_once('/')
                .map_or((rest, path.to_string()), |(h, p)| (h, format!("/{p}")));
            request("POST", host, &p, Some(body), timeout)
        }
        _ => Ok(r),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunks() {
        assert_eq!(
            super::dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
