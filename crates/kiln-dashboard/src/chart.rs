//! Charts as SVG, drawn on the server: a frame with a time axis and a value axis, lines or
//! stacked bars, and events (deploys, restarts, H- and R-errors) as marked vertical lines with
//! their description in a `<title>` (a tooltip, and read by screen readers). Styling is by
//! class, from the stylesheet, so the page's Content-Security-Policy needs no inline style.

use crate::html::esc;
use std::fmt::Write;

pub const W: f64 = 520.0;
pub const H: f64 = 190.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// An event drawn across a chart.
pub struct Event {
    pub t: i64,
    /// `ev-deploy`, `ev-restart` or `ev-error`.
    pub class: &'static str,
    pub label: String,
}

pub struct Frame {
    pub t0: i64,
    pub t1: i64,
    pub max: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + (t - self.t0) as f64 / span * (W - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        let max = if self.max > 0.0 { self.max } else { 1.0 };
        H - BOTTOM - (v / max).clamp(0.0, 1.0) * (H - TOP - BOTTOM)
    }
}

/// A round number at or above `v`, so the axis reads 0, 25, 50, 75, 100 rather than 0, 23.4.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn clock(t: i64, with_day: bool) -> String {
    let ts = kiln_model::Timestamp(t * 1_000_000).rfc3339();
    // 2026-12-05T14:10:12Z
    if with_day {
        format!(
            "{} {}",
            ts.get(5..10).unwrap_or(""),
            ts.get(11..16).unwrap_or("")
        )
    } else {
        ts.get(11..16).unwrap_or("").to_string()
    }
}

/// The frame, axes and labels; `unit` formats a value on the axis.
fn open(out: &mut String, f: &Frame, title: &str, unit: &dyn Fn(f64) -> String) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{}"><title>{}</title>"#,
        esc(title),
        esc(title)
    );
    for i in 0..=4 {
        let v = f.max * f64::from(i) / 4.0;
        let y = f.y(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            esc(&unit(v))
        );
    }
    let with_day = f.t1 - f.t0 > 86_400;
    for i in 0..=3 {
        let t = f.t0 + (f.t1 - f.t0) * i / 3;
        let anchor = match i {
            0 => "start",
            3 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
            f.x(t),
            H - 6.0,
            clock(t, with_day)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}"/><line class="axis" x1="{LEFT}" x2="{}" y1="{}" y2="{}"/>"#,
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
}

fn close(out: &mut String, f: &Frame, events: &[Event]) {
    for e in events.iter().filter(|e| e.t >= f.t0 && e.t <= f.t1) {
        let x = f.x(e.t);
        let _ = write!(
            out,
            r#"<line class="{}" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{}"><title>{}</title></line>"#,
            e.class,
            H - BOTTOM,
            esc(&e.label)
        );
    }
    out.push_str("</svg>");
}

/// Lines: each series is `(class, points)`; a gap in the data breaks the line.
pub fn lines(
    title: &str,
    f: &Frame,
    series: &[(&str, Vec<(i64, f64)>)],
    step: i64,
    unit: &dyn Fn(f64) -> String,
    events: &[Event],
) -> String {
    let mut out = String::new();
    open(&mut out, f, title, unit);
    for (class, pts) in series {
        let mut d = String::new();
        let mut dots = String::new();
        for (i, (t, v)) in pts.iter().enumerate() {
            let joined_before = i > 0 && t - pts[i - 1].0 <= step;
            let joined_after = pts.get(i + 1).is_some_and(|n| n.0 - t <= step);
            let cmd = if joined_before { 'L' } else { 'M' };
            let _ = write!(d, "{cmd}{:.1} {:.1} ", f.x(*t), f.y(*v));
            // A point with no neighbour draws no line: mark it.
            if !joined_before && !joined_after {
                let _ = write!(
                    dots,
                    r#"<circle class="{class}" cx="{:.1}" cy="{:.1}" r="2.5"/>"#,
                    f.x(*t),
                    f.y(*v)
                );
            }
        }
        if !d.is_empty() {
            let _ = write!(out, r#"<path class="{class}" d="{}"/>{dots}"#, d.trim_end());
        }
    }
    close(&mut out, f, events);
    out
}

/// Stacked bars: one bar per step, its parts `(class, value)` from the bottom up.
pub fn stacked(
    title: &str,
    f: &Frame,
    bars: &[(i64, Vec<(&str, f64)>)],
    step: i64,
    unit: &dyn Fn(f64) -> String,
    events: &[Event],
) -> String {
    let mut out = String::new();
    open(&mut out, f, title, unit);
    let width = ((f.x(f.t0 + step) - f.x(f.t0)) * 0.85).max(1.0);
    for (t, parts) in bars {
        let mut base = 0.0;
        for (class, v) in parts {
            if *v <= 0.0 {
                continue;
            }
            let (y0, y1) = (f.y(base), f.y(base + v));
            let _ = write!(
                out,
                r#"<rect class="{class}" x="{:.1}" y="{y1:.1}" width="{width:.1}" height="{:.1}"><title>{} {}</title></rect>"#,
                f.x(*t),
                (y0 - y1).max(0.5),
                esc(class),
                v
            );
            base += v;
        }
    }
    close(&mut out, f, events);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(23.4), 25.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn event_labels_are_escaped_and_gaps_break_lines() {
        let f = Frame {
            t0: 0,
            t1: 600,
            max: 10.0,
        };
        let ev = [Event {
            t: 60,
            class: "ev-deploy",
            label: "<b>v2</b>".into(),
        }];
        let svg = lines(
            "t",
            &f,
            &[("p50", vec![(0, 1.0), (60, 2.0), (300, 3.0)])],
            60,
            &|v| format!("{v}"),
            &ev,
        );
        assert!(svg.contains("&lt;b&gt;v2"), "{svg}");
        assert_eq!(svg.matches('M').count(), 2, "{svg}");
        // The lone point at 300 is marked.
        assert_eq!(svg.matches("<circle").count(), 1, "{svg}");
    }
}
