//! A null OTLP receiver for measuring the generator itself: OTLP/HTTP that
//! reads each body and answers 200 without decoding it, and OTLP/gRPC
//! (tonic's generated server, which decodes) that answers OK.
//!
//! `cargo run --release -p claudewatch-loadgen --example null_server -- 127.0.0.1:14318 127.0.0.1:14317`

#![allow(missing_docs)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

struct Null;

#[tonic::async_trait]
impl TraceService for Null {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let http_addr = args.next().unwrap_or_else(|| "127.0.0.1:14318".into());
    let grpc_addr = args.next().unwrap_or_else(|| "127.0.0.1:14317".into());
    let listener = tokio::net::TcpListener::bind(&http_addr).await?;
    let grpc = tokio::net::TcpListener::bind(&grpc_addr).await?;
    eprintln!("null receiver: OTLP/HTTP on {http_addr}, OTLP/gRPC on {grpc_addr}");
    tokio::spawn(async move {
        let svc = TraceServiceServer::new(Null)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20);
        let _ = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(32 << 20))
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc))
            .await;
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
