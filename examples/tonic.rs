//! A gRPC server (tonic) that upgrades without failing a call: a unary `Say` and a server
//! stream `Ticks` (examples/proto/echo.proto), served by `exuvia::tonic::serve`. At the
//! handover each connection gets a graceful GOAWAY (calls in flight finish, new calls go to
//! the successor); a `Ticks` stream still open at the soft deadline sends a last tick and
//! ends with status OK (docs/http.md).
//!
//! ```text
//! cargo run --example tonic -- --listen 127.0.0.1:50051 --pid-file /tmp/tonic.pid
//! kill -HUP $(cat /tmp/tonic.pid)
//! ```
mod support;

#[allow(clippy::all, missing_docs)]
mod proto {
    include!("proto/exuvia.echo.rs");
}

use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{Stream, stream};
use proto::echo_server::{Echo, EchoServer};
use proto::{SayReply, SayRequest, Tick, TicksRequest};
use tonic::{Request, Response, Status};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("tonic", "127.0.0.1:50051") {
        Ok(args) => support::exit("tonic", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let ex = exuvia::tokio::Exuvia::start(args.builder())?;
    let listener = ex.listen_tcp("grpc", args.listen.as_str())?;
    support::maybe_fail(&args, ex.generation());
    ex.ready()?;
    tracing::info!(addr = %listener.local_addr()?, generation = ex.generation(), "serving");
    let routes = tonic::service::Routes::new(EchoServer::new(Service {
        generation: ex.generation(),
    }));
    let report = exuvia::tonic::serve(&ex, listener, routes).await?;
    tracing::info!(?report, "exiting");
    Ok(())
}

struct Service {
    generation: u64,
}

type Ticks = Pin<Box<dyn Stream<Item = Result<Tick, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Service {
    async fn say(&self, request: Request<SayRequest>) -> Result<Response<SayReply>, Status> {
        Ok(Response::new(SayReply {
            message: request.into_inner().message,
            generation: self.generation,
        }))
    }

    type TicksStream = Ticks;

    async fn ticks(&self, request: Request<TicksRequest>) -> Result<Response<Ticks>, Status> {
        // Fires at the soft deadline of this generation's drain.
        let finish = exuvia::tonic::finish(&request)?;
        let TicksRequest { count, interval_ms } = request.into_inner();
        let interval = Duration::from_millis(u64::from(interval_ms.max(1)));
        let generation = self.generation;
        let tick = move |n, last| {
            Ok(Tick {
                n,
                generation,
                last,
            })
        };
        // State: (next tick number, whether the last one was sent).
        let ticks = stream::unfold((0, false), move |(n, done)| {
            let finish = finish.clone();
            async move {
                if done || (count != 0 && n >= u64::from(count)) {
                    return None; // the stream ends; tonic sends status OK
                }
                if n > 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = finish.requested() => return Some((tick(n, true), (n + 1, true))),
                    }
                }
                Some((tick(n, false), (n + 1, false)))
            }
        });
        Ok(Response::new(Box::pin(ticks)))
    }
}
