//! The echo server with exuvia's metrics for Prometheus, and a pre-flight check that can
//! refuse an upgrade. Counters continue across generations, so a scrape after 100 upgrades
//! says 100 whichever generation answers.
//!
//! ```text
//! cargo run --example metrics --features metrics -- --listen 127.0.0.1:8080 \
//!     --metrics 127.0.0.1:9100 --pid-file /tmp/echo.pid --check-file /tmp/echo.conf
//! curl -s 127.0.0.1:9100/metrics | grep exuvia_
//! echo bad > /tmp/echo.conf; kill -HUP $(cat /tmp/echo.pid)   # refused: "config says bad"
//! ```
mod support;

use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = exuvia::reload_client() {
        return code;
    }
    match support::start("metrics", "127.0.0.1:8080") {
        Ok(args) => support::exit("metrics", run(args).await),
        Err(code) => code,
    }
}

async fn run(args: support::Args) -> Result<(), Box<dyn std::error::Error>> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let check = args.check_file.clone();
    let builder = args.builder().before_upgrade(move || match &check {
        // Validate what the new generation will read before starting it.
        Some(path) => match std::fs::read_to_string(path) {
            Ok(conf) if conf.trim() == "bad" => Err(format!("{} says bad", path.display())),
            _ => Ok(()),
        },
        None => Ok(()),
    });
    let ex = exuvia::tokio::Exuvia::start(builder)?;
    let listener = ex.listen_tcp("echo", args.listen.as_str())?;
    let scrape = ex.listen_tcp(
        "metrics",
        args.metrics.as_deref().unwrap_or("127.0.0.1:9100"),
    )?;
    ex.ready()?;
    let serve_metrics = async {
        while let Ok(Some((mut s, _))) = scrape.accept().await {
            let body = prometheus.render();
            ex.connections().spawn(async move {
                let mut request = [0u8; 1024];
                let _ = s.read(&mut request).await;
                let head = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    };
    let serve_echo = async {
        while let Ok(Some((stream, _))) = listener.accept().await {
            ex.connections().spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if w.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    };
    tokio::join!(serve_metrics, serve_echo);
    ex.drain().await;
    Ok(())
}
