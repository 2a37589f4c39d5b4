//! An HTTP/1.1 server (hyper) whose keep-alive connections drain gracefully: at the
//! handover every connection finishes its current request, answers it with
//! `Connection: close`, and closes; idle keep-alives close at once.
//!
//! `GET /` answers `hello from generation G (pid P)`.
mod support;

use std::convert::Infallible;
use std::process::ExitCode;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> ExitCode {
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
    while let Some((stream, _)) = listener.accept().await? {
        let finish = ex.connections().finish_token();
        ex.connections().spawn(async move {
            let service = hyper::service::service_fn(move |req| hello(req, generation));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = finish.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    ex.drain().await;
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
