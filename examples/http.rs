//! An HTTP server (a plain hyper service) that upgrades without failing a request: HTTP/1.1
//! and cleartext HTTP/2 on one port, drained the lame-duck way by `exuvia::http::serve`.
//! At the handover every request in flight finishes; each HTTP/1.1 connection gets
//! `Connection: close` on its next response and closes after it; HTTP/2 connections get a
//! graceful GOAWAY; idle keep-alives close after the idle grace (docs/http.md).
//!
//! `GET /` answers `hello from generation G (pid P)`.
mod support;

use std::convert::Infallible;
use std::process::ExitCode;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("http", "127.0.0.1:8080") {
        Ok(args) => support::exit("http", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = exuvia::tokio::Exuvia::start(args.builder())?;
    let listener = ex.listen_tcp("http", args.listen.as_str())?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    let generation = ex.generation();
    tracing::info!(addr = %listener.local_addr()?, generation, "serving");
    let service = hyper::service::service_fn(move |req| hello(req, generation));
    let report = exuvia::http::serve(&ex, listener, service).await?;
    tracing::info!(?report, "exiting");
    Ok(())
}

async fn hello(
    _req: Request<Incoming>,
    generation: u64,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = format!(
        "hello from generation {generation} (pid {})\n",
        std::process::id()
    );
    Ok(Response::new(Full::new(Bytes::from(body))))
}
