//! What an operator relies on: counters that continue across generations (feature
//! `metrics`, `examples/metrics.rs`), and a pre-upgrade hook that can refuse an upgrade.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn counters_continue_across_a_hundred_generations_and_a_hook_can_refuse() {
    let dir = Scratch::new("metrics");
    let check = dir.path("check.conf");
    let metrics = free_addr();
    let mut svc = Service::start(
        &example("metrics"),
        &dir,
        &[
            "--metrics",
            &metrics.to_string(),
            "--check-file",
            check.to_str().unwrap(),
        ],
    );
    let load = echo_load(svc.target(), 4, Duration::from_secs(300));
    for _ in 0..100 {
        svc.upgrade(Duration::from_secs(20));
    }
    // The refusal: the old generation keeps serving and the reason is counted.
    std::fs::write(&check, "bad\n").unwrap();
    let pid = svc.pid().unwrap();
    signal(pid, libc::SIGHUP);
    assert!(svc.wait_log(
        "pre-upgrade check refused the upgrade",
        Duration::from_secs(10)
    ));
    assert_eq!(svc.pid(), Some(pid));
    let report = load.stop();
    assert_eq!(report.failed, 0, "{report}");
    // The last old generation's drain results reach the successor a moment after it exits.
    std::thread::sleep(Duration::from_millis(500));

    let text = scrape(metrics);
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    eprintln!(
        "measured: after 100 upgrades: started {} handed over {} vetoed {} generation {} drained {}",
        v("exuvia_upgrades_started_total"),
        v("exuvia_upgrades_handed_over_total"),
        v("exuvia_upgrades_failed_total{reason=\"vetoed\"}"),
        v("exuvia_generation"),
        v("exuvia_connections_drained_total"),
    );
    assert_eq!(v("exuvia_upgrades_started_total"), 101.0);
    assert_eq!(v("exuvia_upgrades_handed_over_total"), 100.0);
    assert_eq!(v("exuvia_upgrades_failed_total{reason=\"vetoed\"}"), 1.0);
    assert_eq!(v("exuvia_generation"), 101.0);
    assert!(v("exuvia_connections_drained_total") >= 1.0);
    // Histograms are per generation (a newest one that never handed over has none).
    svc.stop();
}
