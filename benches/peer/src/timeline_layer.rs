//! A tracing layer for the exuvia servers: each exuvia event that carries timeline fields
//! (`t_*`, CLOCK_MONOTONIC µs) becomes one line `PID name=value …` (its integer fields) in a
//! file shared by every generation (appends of one short line are atomic), which the driver
//! reads after the run. Only exuvia's own events reach it; nothing is formatted otherwise.
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Default)]
struct Fields {
    ints: Vec<(&'static str, u64)>,
    timeline: bool,
}

impl Visit for Fields {
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.timeline |= f.name().starts_with("t_");
        self.ints.push((f.name(), v));
    }

    fn record_i64(&mut self, f: &Field, v: i64) {
        if let Ok(v) = u64::try_from(v) {
            self.record_u64(f, v);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

struct Timeline {
    file: Mutex<std::fs::File>,
}

impl<S: tracing::Subscriber> Layer<S> for Timeline {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        if !f.timeline {
            return;
        }
        let mut line = std::process::id().to_string();
        for (k, v) in f.ints {
            line.push_str(&format!(" {k}={v}"));
        }
        line.push('\n');
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

pub fn install(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let layer = Timeline {
        file: Mutex::new(file),
    }
    .with_filter(Targets::new().with_target("exuvia", tracing::Level::DEBUG));
    tracing_subscriber::registry().with(layer).init();
    Ok(())
}
