//! Sending one export request: OTLP/HTTP (hyper, one HTTP/1.1 keep-alive
//! connection per worker) or OTLP/gRPC (tonic, one HTTP/2 channel per
//! worker), and what the answer means for retrying.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use tokio::net::TcpStream;

use crate::encode::Format;
use crate::Error;

/// The OTLP transport and encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub enum Protocol {
    /// OTLP/HTTP, binary protobuf.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP/HTTP, OTLP/JSON.
    #[serde(rename = "http/json")]
    HttpJson,
    /// OTLP/gRPC.
    #[serde(rename = "grpc")]
    Grpc,
}

impl Protocol {
    /// The body format.
    pub fn format(self) -> Format {
        match self {
            Protocol::HttpJson => Format::Json,
            _ => Format::Protobuf,
        }
    }

    /// The default endpoint (the OTLP default ports on loopback).
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Protocol::Grpc => "http://127.0.0.1:4317",
            _ => "http://127.0.0.1:4318",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = Error;
    fn from_str(s: &str) -> Result<Protocol, Error> {
        match s {
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Ok(Protocol::HttpJson),
            "grpc" => Ok(Protocol::Grpc),
            other => Err(Error::Config(format!(
                "unknown protocol {other:?} (http/protobuf, http/json or grpc)"
            ))),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Acknowledged; `rejected` spans were refused in a partial success.
    Acked {
        /// `rejected_spans` of a partial success (0 for a full success).
        rejected: u64,
    },
    /// Failed in a way a retry can fix.
    Retry {
        /// Error kind, for the report (`http_503`, `grpc_unavailable`, `connect`, ...).
        kind: String,
        /// The server's `Retry-After`.
        after: Option<Duration>,
        /// The server answered (the attempt's latency means something).
        answered: bool,
    },
    /// Failed for good.
    Fail {
        /// Error kind, for the report (`http_400`, `grpc_invalid_argument`, ...).
        kind: String,
    },
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// Protocol.
    pub protocol: Protocol,
    /// `host:port` to connect to.
    pub authority: String,
    /// Request path (HTTP) .
    pub path: String,
    /// The endpoint URL as given.
    pub url: String,
    /// Compress request bodies with gzip.
    pub gzip: bool,
    /// `Authorization: Bearer` token.
    pub bearer: Option<String>,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Target {
    /// Parses an endpoint URL (`http://host:port[/path]`). For OTLP/HTTP the
    /// path `/v1/traces` is appended unless the URL already ends with it.
    pub fn new(
        protocol: Protocol,
        endpoint: &str,
        gzip: bool,
        bearer: Option<String>,
        timeout: Duration,
    ) -> Result<Target, Error> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| Error::Config(format!("endpoint {endpoint:?}: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(Error::Config(format!(
                "endpoint {endpoint:?}: only http:// is supported (no TLS)"
            )));
        }
        let host = uri
            .host()
            .ok_or_else(|| Error::Config(format!("endpoint {endpoint:?} has no host")))?;
        let port = uri.port_u16().unwrap_or(80);
        let base = uri.path().trim_end_matches('/');
        let path = if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        };
        Ok(Target {
            protocol,
            authority: format!("{host}:{port}"),
            path,
            url: endpoint.to_owned(),
            gzip,
            bearer,
            timeout,
        })
    }
}

/// One worker's connection (one per worker: the size difference is moot).
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    /// OTLP/HTTP over one HTTP/1.1 connection.
    Http(HttpConn),
    /// OTLP/gRPC over one channel.
    Grpc(GrpcConn),
}

impl Conn {
    /// A connection (opened lazily on the first send).
    pub fn new(target: &Target) -> Result<Conn, Error> {
        Ok(match target.protocol {
            Protocol::Grpc => Conn::Grpc(GrpcConn::new(target)?),
            _ => Conn::Http(HttpConn::new(target)?),
        })
    }

    /// Sends one request body (already gzipped when `gzip` is on).
    pub async fn send(&mut self, body: Bytes) -> Attempt {
        match self {
            Conn::Http(c) => c.send(body).await,
            Conn::Grpc(c) => c.send(body).await,
        }
    }
}

fn retry(kind: &str, answered: bool) -> Attempt {
    Attempt::Retry {
        kind: kind.to_owned(),
        after: None,
        answered,
    }
}

/// An OTLP/HTTP connection.
pub struct HttpConn {
    target: Target,
    sender: Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>>,
    content_type: http::HeaderValue,
    authorization: Option<http::HeaderValue>,
    host: http::HeaderValue,
}

impl HttpConn {
    fn new(target: &Target) -> Result<HttpConn, Error> {
        let content_type = http::HeaderValue::from_static(match target.protocol.format() {
            Format::Json => "application/json",
            Format::Protobuf => "application/x-protobuf",
        });
        let authorization = target
            .bearer
            .as_ref()
            .map(|t| http::HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| Error::Config("bearer token is not a valid header value".into()))?;
        let host = http::HeaderValue::from_str(&target.authority)
            .map_err(|_| Error::Config("endpoint host is not a valid header value".into()))?;
        Ok(HttpConn {
            target: target.clone(),
            sender: None,
            content_type,
            authorization,
            host,
        })
    }

    async fn connect(&mut self) -> Result<(), Attempt> {
        let tcp = TcpStream::connect(&self.target.authority)
            .await
            .map_err(|_| retry("connect", false))?;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|_| retry("connect", false))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    async fn send(&mut self, body: Bytes) -> Attempt {
        match tokio::time::timeout(self.target.timeout, self.exchange(body)).await {
            Ok(a) => a,
            Err(_) => {
                self.sender = None;
                retry("timeout", false)
            }
        }
    }

    async fn exchange(&mut self, body: Bytes) -> Attempt {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            if let Err(a) = self.connect().await {
                return a;
            }
        }
        let Some(sender) = self.sender.as_mut() else {
            return retry("connect", false);
        };
        if sender.ready().await.is_err() {
            self.sender = None;
            return retry("connection_closed", false);
        }
        let mut req = hyper::Request::new(Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = match http::Uri::try_from(self.target.path.as_str()) {
            Ok(u) => u,
            Err(_) => {
                return Attempt::Fail {
                    kind: "bad_path".into(),
                }
            }
        };
        let h = req.headers_mut();
        h.insert(http::header::HOST, self.host.clone());
        h.insert(http::header::CONTENT_TYPE, self.content_type.clone());
        h.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!(
                "claudewatch-loadgen/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        if self.target.gzip {
            h.insert(
                http::header::CONTENT_ENCODING,
                http::HeaderValue::from_static("gzip"),
            );
        }
        if let Some(a) = &self.authorization {
            h.insert(http::header::AUTHORIZATION, a.clone());
        }
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                return retry("io", false);
            }
        };
        let status = resp.status().as_u16();
        let after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                self.sender = None;
                return retry("io", true);
            }
        };
        match status {
            200..=299 => Attempt::Acked {
                rejected: rejected_spans(&body, self.target.protocol.format()),
            },
            429 | 502 | 503 | 504 => Attempt::Retry {
                kind: format!("http_{status}"),
                after,
                answered: true,
            },
            _ => Attempt::Fail {
                kind: format!("http_{status}"),
            },
        }
    }
}

/// `partial_success.rejected_spans` of an OTLP/HTTP answer body.
fn rejected_spans(body: &[u8], format: Format) -> u64 {
    if body.is_empty() {
        return 0;
    }
    match format {
        Format::Protobuf => ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)),
        Format::Json => serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let p = v
                    .get("partialSuccess")
                    .or_else(|| v.get("partial_success"))?;
                let n = p.get("rejectedSpans").or_else(|| p.get("rejected_spans"))?;
                n.as_u64().or_else(|| n.as_str()?.parse().ok())
            })
            .unwrap_or(0),
    }
}

/// The gRPC method path of the OTLP trace service.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// An OTLP/gRPC channel. Requests are framed here (the 5-byte gRPC message
/// prefix around the pre-encoded body, already gzipped by the generator when
/// `gzip` is on, like the HTTP bodies) and sent through tonic's HTTP/2
/// channel; the answer's `grpc-status` is read from the headers or trailers.
/// Framing here, rather than through tonic's codec, lets the generator choose
/// the gzip level: tonic's client always compresses at level 6, which made
/// the generator, not serve, the limit of the gRPC + gzip benchmark.
pub struct GrpcConn {
    endpoint: tonic::transport::Endpoint,
    uri: http::Uri,
    gzip: bool,
    timeout: Duration,
    authorization: Option<http::HeaderValue>,
    channel: Option<tonic::transport::Channel>,
}

impl GrpcConn {
    fn new(target: &Target) -> Result<GrpcConn, Error> {
        let base = format!("http://{}", target.authority);
        let endpoint = tonic::transport::Endpoint::from_shared(base.clone())
            .map_err(|e| Error::Config(format!("endpoint {}: {e}", target.url)))?
            .timeout(target.timeout)
            .connect_timeout(target.timeout)
            .tcp_nodelay(true)
            // Requests are ~100 KB: h2's default 64 KB windows would cost a
            // round trip per request (the receiver's windows matter too).
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(32 << 20));
        let uri = format!("{base}{EXPORT_PATH}")
            .parse()
            .map_err(|e| Error::Config(format!("endpoint {}: {e}", target.url)))?;
        let authorization = target
            .bearer
            .as_ref()
            .map(|t| http::HeaderValue::from_str(&format!("Bearer {t}")))
            .transpose()
            .map_err(|_| Error::Config("bearer token is not a valid metadata value".into()))?;
        Ok(GrpcConn {
            endpoint,
            uri,
            gzip: target.gzip,
            timeout: target.timeout,
            authorization,
            channel: None,
        })
    }

    async fn send(&mut self, body: Bytes) -> Attempt {
        use tonic::codegen::Service;
        if self.channel.is_none() {
            match self.endpoint.connect().await {
                Ok(c) => self.channel = Some(c),
                Err(_) => return retry("connect", false),
            }
        }
        let Some(channel) = self.channel.as_mut() else {
            return retry("connect", false);
        };
        if std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .is_err()
        {
            self.channel = None;
            return retry("connection_closed", false);
        }
        let mut frame = Vec::with_capacity(5 + body.len());
        frame.push(u8::from(self.gzip));
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut req = http::Request::new(tonic::body::Body::new(Full::new(Bytes::from(frame))));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = self.uri.clone();
        let headers = req.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        if self.gzip {
            headers.insert("grpc-encoding", http::HeaderValue::from_static("gzip"));
            // As gRPC clients with a gzip compressor do: they take gzipped answers.
            headers.insert(
                "grpc-accept-encoding",
                http::HeaderValue::from_static("gzip"),
            );
        }
        if let Some(a) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, a.clone());
        }
        let exchange = async {
            match channel.call(req).await {
                Ok(response) => read_answer(response).await,
                Err(_) => None,
            }
        };
        let Ok(answer) = tokio::time::timeout(self.timeout, exchange).await else {
            self.channel = None;
            return retry("timeout", false);
        };
        match answer {
            Some((tonic::Code::Ok, message)) => Attempt::Acked {
                rejected: ExportTraceServiceResponse::decode(&message[..])
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_spans).unwrap_or(0)),
            },
            Some((code, _)) => attempt_of(code, true),
            // No answer: the connection failed or timed out.
            None => {
                self.channel = None;
                attempt_of(tonic::Code::Unavailable, false)
            }
        }
    }
}

/// The status of a gRPC answer and its (uncompressed) message; `None` when
/// the exchange failed below gRPC.
async fn read_answer(response: http::Response<tonic::body::Body>) -> Option<(tonic::Code, Bytes)> {
    let code_in = |headers: &http::HeaderMap| {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
            .map(tonic::Code::from_i32)
    };
    let (parts, body) = response.into_parts();
    if parts.status != http::StatusCode::OK {
        return Some((code_of_http_status(parts.status), Bytes::new()));
    }
    // A Trailers-Only answer carries its status in the headers.
    if let Some(code) = code_in(&parts.headers) {
        return Some((code, Bytes::new()));
    }
    let collected = body.collect().await.ok()?;
    let code = collected
        .trailers()
        .and_then(code_in)
        .unwrap_or(tonic::Code::Unknown);
    let data = collected.to_bytes();
    let message = match (data.first(), data.get(5..)) {
        (Some(0), Some(m)) => Bytes::copy_from_slice(m),
        (Some(1), Some(m)) => {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(m), &mut out).ok()?;
            Bytes::from(out)
        }
        _ => Bytes::new(),
    };
    Some((code, message))
}

/// The gRPC code an HTTP status stands for (gRPC's HTTP-to-status mapping).
fn code_of_http_status(status: http::StatusCode) -> tonic::Code {
    match status.as_u16() {
        400 => tonic::Code::Internal,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::Unimplemented,
        429 | 502..=504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

/// What a gRPC failure means for the request: retryable codes are retried
/// (OTLP's list), the rest fail it. `answered` is false when no server
/// answered (the connection is then reopened).
fn attempt_of(code: tonic::Code, answered: bool) -> Attempt {
    use tonic::Code;
    let kind = format!("grpc_{}", code_name(code));
    match code {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Attempt::Retry {
            kind,
            after: None,
            answered,
        },
        _ => Attempt::Fail { kind },
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_paths() {
        let t = |e: &str| {
            Target::new(
                Protocol::HttpProtobuf,
                e,
                false,
                None,
                Duration::from_secs(1),
            )
            .map(|t| (t.authority, t.path))
        };
        assert_eq!(
            t("http://127.0.0.1:4318").unwrap(),
            ("127.0.0.1:4318".into(), "/v1/traces".into())
        );
        assert_eq!(t("http://h:1/otlp/").unwrap().1, "/otlp/v1/traces");
        assert_eq!(t("http://h:1/v1/traces").unwrap().1, "/v1/traces");
        assert!(t("https://h:1").is_err());
    }

    #[test]
    fn partial_success_is_read() {
        let body = ExportTraceServiceResponse {
            partial_success: Some(
                opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess {
                    rejected_spans: 3,
                    error_message: "x".into(),
                },
            ),
        }
        .encode_to_vec();
        assert_eq!(rejected_spans(&body, Format::Protobuf), 3);
        assert_eq!(
            rejected_spans(br#"{"partialSuccess":{"rejectedSpans":"2"}}"#, Format::Json),
            2
        );
        assert_eq!(rejected_spans(b"{}", Format::Json), 0);
    }
}
