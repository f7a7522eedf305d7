//! A minimal keep-alive HTTP/1.1 client (Content-Length bodies only: what actix-web sends here).
//!
//! A full client library would put its own CPU cost into the figures; this one parses just
//! enough to find where each response ends.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    consumed: usize,
}

struct Head {
    len: usize,
    status: u16,
    content_length: usize,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(invalid("a response head over 64 KiB"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..pos]).map_err(|_| invalid("a non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("a response without a status line"))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid(
                "chunked responses are not supported by this client",
            ));
        }
    }
    let content_length = match (content_length, status) {
        (Some(n), _) => n,
        (None, 204 | 304) => 0,
        (None, _) => return Err(invalid("a response without Content-Length")),
    };
    Ok(Some(Head {
        len: pos + 4,
        status,
        content_length,
    }))
}

impl HttpConn {
    pub async fn open(addr: SocketAddr) -> Res<HttpConn> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(HttpConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            consumed: 0,
        })
    }

    /// Sends one request and reads its response: the status and the body's range in the buffer.
    pub async fn call(&mut self, req: &[u8]) -> std::io::Result<(u16, Range<usize>)> {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.stream.write_all(req).await?;
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let end = head.len + head.content_length;
                while self.buf.len() < end {
                    self.fill().await?;
                }
                self.consumed = end;
                return Ok((head.status, head.len..end));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    pub fn body(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    pub async fn json(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let text = body.map(Value::to_string);
        let req = http_request(host, method, path, token, text.as_deref());
        let (status, range) = self
            .call(&req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let bytes = self.body(range);
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        };
        Ok((status, value))
    }

    pub async fn text(&mut self, host: &str, path: &str) -> Res<String> {
        let req = http_request(host, "GET", path, None, None);
        let (status, range) = self
            .call(&req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}"));
        }
        Ok(String::from_utf8_lossy(self.body(range)).into_owned())
    }
}

pub fn http_request(
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(t) = token {
        let _ = write!(r, "Authorization: Bearer {t}\r\n");
    }
    match body {
        Some(b) => {
            let _ = write!(
                r,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => r.push_str("\r\n"),
    }
    r.into_bytes()
}

pub async fn open_conns(addr: SocketAddr, n: usize) -> Res<Vec<HttpConn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(HttpConn::open(addr).await?);
    }
    Ok(conns)
}
