//! A two-panel SVG written by hand (no plotting dependency): failed requests per upgrade,
//! and reload latency on a log scale.
use std::fmt::Write as _;

use crate::contender::Kind;

const W: f64 = 960.0;
const H: f64 = 440.0;
const TOP: f64 = 70.0;
const BOTTOM: f64 = 330.0;
const COLORS: [&str; 4] = ["#1b7837", "#2166ac", "#b2182b", "#e08214"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, size: u32, s: &str) {
    let _ = writeln!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" font-size="{size}">{}</text>"#,
        esc(s)
    );
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A round axis step (1, 2 or 5 times a power of ten) at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 0.25;
    }
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// `failures[k]` = (min, median, max) per contender; `lat[k]` = serving p50, p99, closed p50, p99.
pub fn plot(title: &str, failures: &[(f64, f64, f64)], lat: &[[f64; 4]], caption: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    text(&mut o, W / 2.0, 24.0, "middle", 16, title);
    for (i, line) in caption.lines().enumerate() {
        text(
            &mut o,
            W / 2.0,
            H - 30.0 + 14.0 * i as f64,
            "middle",
            10,
            line,
        );
    }

    // Panel A: failed requests per upgrade, linear.
    let (x0, x1) = (70.0, 440.0);
    let top = failures
        .iter()
        .map(|f| f.2)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let step = nice_step(top * 1.1 / 4.0);
    let ticks = ((top * 1.1 / step).ceil() as usize).max(1);
    let ymax = step * ticks as f64;
    let y = |v: f64| BOTTOM - (v / ymax) * (BOTTOM - TOP);
    text(
        &mut o,
        (x0 + x1) / 2.0,
        50.0,
        "middle",
        13,
        "failed requests per upgrade (median, whiskers min–max over runs)",
    );
    for i in 0..=ticks {
        let v = step * i as f64;
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" x2="{x1}" y1="{0:.1}" y2="{0:.1}" stroke="#ddd"/>"##,
            y(v)
        );
        text(&mut o, x0 - 6.0, y(v) + 4.0, "end", 11, &num(v));
    }
    let slot = (x1 - x0) / failures.len() as f64;
    for (i, (f, k)) in failures.iter().zip(Kind::ALL).enumerate() {
        let cx = x0 + slot * (i as f64 + 0.5);
        let (lo, med, hi) = *f;
        let _ = writeln!(
            o,
            r#"<rect x="{:.1}" y="{:.1}" width="40" height="{:.1}" fill="{}"/>"#,
            cx - 20.0,
            y(med),
            BOTTOM - y(med),
            COLORS[i]
        );
        let _ = writeln!(
            o,
            r##"<line x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}" stroke="#000"/>"##,
            y(lo),
            y(hi)
        );
        text(&mut o, cx, y(hi) - 6.0, "middle", 12, &num(med));
        text(&mut o, cx, BOTTOM + 18.0, "middle", 12, k.name());
    }

    // Panel B: reload latency, log scale.
    let (x0, x1) = (540.0, 920.0);
    let top = lat
        .iter()
        .flat_map(|l| l.iter())
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0, f64::max);
    let (lmin, lmax) = (-1.0_f64, top.log10().ceil().max(1.0));
    let y = |v: f64| {
        let l = v.max(0.1).log10();
        BOTTOM - (l - lmin) / (lmax - lmin) * (BOTTOM - TOP)
    };
    text(
        &mut o,
        (x0 + x1) / 2.0,
        50.0,
        "middle",
        13,
        "ms from trigger (log scale): bar = p50, tick = p99",
    );
    let mut d = lmin;
    while d <= lmax + 1e-9 {
        let v = 10f64.powf(d);
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" x2="{x1}" y1="{0:.1}" y2="{0:.1}" stroke="#ddd"/>"##,
            y(v)
        );
        text(&mut o, x0 - 6.0, y(v) + 4.0, "end", 11, &num(v));
        d += 1.0;
    }
    let slot = (x1 - x0) / lat.len() as f64;
    for (i, (l, k)) in lat.iter().zip(Kind::ALL).enumerate() {
        let cx = x0 + slot * (i as f64 + 0.5);
        for (j, (p50, p99, fill)) in [(l[0], l[1], "#9ecae1"), (l[2], l[3], "#636363")]
            .into_iter()
            .enumerate()
        {
            if !p50.is_finite() {
                continue;
            }
            let bx = cx - 30.0 + j as f64 * 31.0;
            let _ = writeln!(
                o,
                r#"<rect x="{bx:.1}" y="{:.1}" width="29" height="{:.1}" fill="{fill}"/>"#,
                y(p50),
                BOTTOM - y(p50)
            );
            let _ = writeln!(
                o,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{2:.1}" y2="{2:.1}" stroke="#000" stroke-width="2"/>"##,
                bx,
                bx + 29.0,
                y(p99)
            );
            text(&mut o, bx + 14.5, y(p99) - 5.0, "middle", 10, &num(p50));
        }
        text(&mut o, cx, BOTTOM + 18.0, "middle", 12, k.name());
    }
    let ly = BOTTOM + 40.0;
    let _ = writeln!(
        o,
        r##"<rect x="{x0}" y="{:.1}" width="12" height="12" fill="#9ecae1"/>"##,
        ly - 10.0
    );
    text(
        &mut o,
        x0 + 16.0,
        ly,
        "start",
        11,
        "successor serving (first accept)",
    );
    let _ = writeln!(
        o,
        r##"<rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#636363"/>"##,
        x0 + 210.0,
        ly - 10.0
    );
    text(&mut o, x0 + 226.0, ly, "start", 11, "old listener closed");
    o.push_str("</svg>\n");
    o
}
