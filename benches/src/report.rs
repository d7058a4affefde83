//! `fedcredit report`: a self-contained HTML report of a model with inline SVG charts (no
//! script or style is fetched; the file opens anywhere): ROC and KS curves, the score
//! distribution by outcome and the calibration on labelled enterprises scored by the
//! scoring service, the training curve (log loss and validation AUC per epoch, round or
//! tree), information value per party and feature, the score history of a few enterprises
//! and the ecosystem health index over time.
//!
//! The charts are drawn here as SVG paths (the charting is small enough not to need a
//! plotting crate). A short inline script counts, on load, the charts that hold drawn marks
//! and writes the count into `<body data-charts-drawn>`, which the browser test reads.

use std::fmt::Write as _;

use serde::Serialize;

/// One line of a line chart.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// `(x, y)` points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A chart of the report.
#[derive(Debug, Clone, Serialize)]
pub enum Chart {
    /// Lines over a numeric x axis.
    Lines {
        /// Title.
        title: String,
        /// X axis label.
        x: String,
        /// Y axis label.
        y: String,
        /// The lines.
        series: Vec<Series>,
    },
    /// Grouped bars over categories.
    Bars {
        /// Title.
        title: String,
        /// Y axis label.
        y: String,
        /// Category labels.
        categories: Vec<String>,
        /// `(legend, one value per category)`.
        groups: Vec<(String, Vec<f64>)>,
    },
}

/// The report's content.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Heading.
    pub title: String,
    /// Lines of key figures under the heading.
    pub summary: Vec<String>,
    /// `(section heading, its charts)`.
    pub sections: Vec<(String, Vec<Chart>)>,
}

const COLORS: [&str; 6] = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a"];
const W: f64 = 560.0;
const H: f64 = 320.0;
const L: f64 = 56.0;
const R: f64 = 16.0;
const T: f64 = 34.0;
const B: f64 = 46.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    (lo, hi)
}

fn tick(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.round() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn frame(
    out: &mut String,
    title: &str,
    x: &str,
    y: &str,
    xr: (f64, f64),
    yr: (f64, f64),
    numeric_x: bool,
) {
    let _ = write!(
        out,
        r##"<text x="{}" y="20" class="t">{}</text><rect x="{L}" y="{T}" width="{}" height="{}" class="f"/>"##,
        W / 2.0,
        esc(title),
        W - L - R,
        H - T - B
    );
    for k in 0..=4 {
        let f = f64::from(k) / 4.0;
        let yv = yr.0 + f * (yr.1 - yr.0);
        let py = H - B - f * (H - T - B);
        let _ = write!(
            out,
            r##"<line x1="{L}" x2="{}" y1="{py:.1}" y2="{py:.1}" class="g"/><text x="{}" y="{:.1}" class="yl">{}</text>"##,
            W - R,
            L - 6.0,
            py + 4.0,
            tick(yv)
        );
        if numeric_x {
            let xv = xr.0 + f * (xr.1 - xr.0);
            let px = L + f * (W - L - R);
            let _ = write!(
                out,
                r##"<text x="{px:.1}" y="{}" class="xl">{}</text>"##,
                H - B + 16.0,
                tick(xv)
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" class="al">{}</text><text x="14" y="{}" class="al" transform="rotate(-90 14 {})">{}</text>"##,
        L + (W - L - R) / 2.0,
        H - 8.0,
        esc(x),
        T + (H - T - B) / 2.0,
        T + (H - T - B) / 2.0,
        esc(y)
    );
}

fn legend(out: &mut String, names: &[&str]) {
    let mut x = L + 10.0;
    for (i, n) in names.iter().enumerate() {
        let _ = write!(
            out,
            r##"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" class="lg">{}</text>"##,
            T + 8.0,
            COLORS[i % COLORS.len()],
            x + 14.0,
            T + 17.0,
            esc(n)
        );
        x += 34.0 + 6.2 * n.chars().count() as f64;
    }
}

/// One chart as an SVG element.
pub fn svg(chart: &Chart, id: usize) -> String {
    let mut out = format!(
        r##"<svg class="chart" id="chart-{id}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">"##
    );
    match chart {
        Chart::Lines { title, x, y, series } => {
            let xr = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
            let yr = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
            frame(&mut out, title, x, y, xr, yr, true);
            let px = |v: f64| L + (v - xr.0) / (xr.1 - xr.0) * (W - L - R);
            let py = |v: f64| H - B - (v - yr.0) / (yr.1 - yr.0) * (H - T - B);
            for (i, s) in series.iter().enumerate() {
                let pts: Vec<String> = s
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let c = COLORS[i % COLORS.len()];
                let _ = write!(
                    out,
                    r##"<polyline class="mark" fill="none" stroke="{c}" stroke-width="2" points="{}"/>"##,
                    pts.join(" ")
                );
                if pts.len() <= 40 {
                    for p in &pts {
                        let (a, b) = p.split_once(',').unwrap_or(("0", "0"));
                        let _ = write!(
                            out,
                            r##"<circle class="mark" cx="{a}" cy="{b}" r="2.5" fill="{c}"/>"##
                        );
                    }
                }
            }
            legend(&mut out, &series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
        }
        Chart::Bars { title, y, categories, groups } => {
            let top =
                groups.iter().flat_map(|g| g.1.iter().copied()).fold(0.0, f64::max).max(1e-12);
            let yr = (0.0, top);
            frame(&mut out, title, "", y, (0.0, 1.0), yr, false);
            let n = categories.len().max(1) as f64;
            let slot = (W - L - R) / n;
            let bw = (slot * 0.8 / groups.len().max(1) as f64).max(1.0);
            for (g, (_, values)) in groups.iter().enumerate() {
                for (k, v) in values.iter().enumerate() {
                    let h = (v / top) * (H - T - B);
                    let x = L + slot * k as f64 + slot * 0.1 + bw * g as f64;
                    let _ = write!(
                        out,
                        r##"<rect class="mark" x="{x:.1}" y="{:.1}" width="{bw:.1}" height="{h:.1}" fill="{}"/>"##,
                        H - B - h,
                        COLORS[g % COLORS.len()]
                    );
                }
            }
            // Labels wider than their slot are slanted and shortened; the whole label is the
            // element's tooltip.
            let longest = categories.iter().map(|c| c.chars().count()).max().unwrap_or(0);
            let slanted = longest as f64 * 6.0 > slot;
            let every = if slanted { 1 } else { (categories.len() / 10).max(1) };
            for (k, c) in categories.iter().enumerate().filter(|(k, _)| k % every == 0) {
                let x = L + slot * (k as f64 + 0.5);
                if slanted {
                    let y = H - B + 10.0;
                    let short: String = if c.chars().count() > 12 {
                        c.chars().take(11).chain(std::iter::once('…')).collect()
                    } else {
                        c.clone()
                    };
                    let _ = write!(
                        out,
                        r##"<text x="{x:.1}" y="{y:.1}" class="xr" transform="rotate(-30 {x:.1} {y:.1})"><title>{}</title>{}</text>"##,
                        esc(c),
                        esc(&short)
                    );
                } else {
                    let _ = write!(
                        out,
                        r##"<text x="{x:.1}" y="{}" class="xl">{}</text>"##,
                        H - B + 16.0,
                        esc(c)
                    );
                }
            }
            legend(&mut out, &groups.iter().map(|g| g.0.as_str()).collect::<Vec<_>>());
        }
    }
    out.push_str("</svg>");
    out
}

/// The whole report as one HTML page.
pub fn html(report: &Report) -> String {
    let mut body = String::new();
    let mut id = 0;
    for (heading, charts) in &report.sections {
        let _ = write!(body, "<h2>{}</h2><div class=\"row\">", esc(heading));
        for c in charts {
            body.push_str(&svg(c, id));
            id += 1;
        }
        body.push_str("</div>");
    }
    let summary: String = report.summary.iter().map(|s| format!("<li>{}</li>", esc(s))).collect();
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1f2328; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
.row {{ display: flex; flex-wrap: wrap; gap: 12px; }}
svg.chart {{ background: #fff; border: 1px solid #d0d7de; border-radius: 6px; }}
.t {{ font-size: 14px; font-weight: 600; text-anchor: middle; }}
.f {{ fill: none; stroke: #d0d7de; }} .g {{ stroke: #eaeef2; }}
.yl {{ font-size: 10px; text-anchor: end; fill: #57606a; }}
.xl {{ font-size: 10px; text-anchor: middle; fill: #57606a; }}
.xr {{ font-size: 9px; text-anchor: end; fill: #57606a; }}
.al {{ font-size: 11px; text-anchor: middle; fill: #57606a; }}
.lg {{ font-size: 11px; fill: #1f2328; }}
</style></head>
<body data-charts="{n}" data-charts-drawn="0">
<h1>{title}</h1><ul>{summary}</ul>
{body}
<script>
(function () {{
  var drawn = 0;
  document.querySelectorAll('svg.chart').forEach(function (s) {{
    var marks = s.querySelectorAll('.mark');
    var ok = false;
    marks.forEach(function (m) {{ var b = m.getBBox(); if (b.width > 0 || b.height > 0) ok = true; }});
    if (ok) drawn += 1;
  }});
  document.body.setAttribute('data-charts-drawn', String(drawn));
}})();
</script>
</body></html>
"##,
        title = esc(&report.title),
        n = id,
    )
}

/// ROC points `(false positive rate, true positive rate)` of scores (higher = riskier).
pub fn roc(scores: &[f64], labels: &[f64]) -> Vec<(f64, f64)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let pos = labels.iter().filter(|l| **l > 0.5).count().max(1) as f64;
    let neg = labels.iter().filter(|l| **l <= 0.5).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let step = (idx.len() / 200).max(1);
    let mut out = vec![(0.0, 0.0)];
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] > 0.5 {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if k % step == 0 || k + 1 == idx.len() {
            out.push((fp / neg, tp / pos));
        }
    }
    out
}

/// The KS chart: cumulative shares of defaults and non-defaults by score decile position,
/// riskiest first.
pub fn ks_curves(scores: &[f64], labels: &[f64]) -> (Series, Series) {
    let pts = roc(scores, labels);
    let n = pts.len().max(2) as f64 - 1.0;
    let bad = pts.iter().enumerate().map(|(k, p)| (k as f64 / n, p.1)).collect();
    let good = pts.iter().enumerate().map(|(k, p)| (k as f64 / n, p.0)).collect();
    (
        Series { name: "defaults (cumulative share)".into(), points: bad },
        Series { name: "non-defaults".into(), points: good },
    )
}

/// Calibration: mean predicted PD against the observed default rate per decile of PD.
pub fn calibration(pd: &[f64], labels: &[f64]) -> Series {
    let mut idx: Vec<usize> = (0..pd.len()).collect();
    idx.sort_by(|&a, &b| pd[a].total_cmp(&pd[b]));
    let points = idx
        .chunks(idx.len().div_ceil(10).max(1))
        .map(|c| {
            let n = c.len() as f64;
            (
                c.iter().map(|&i| pd[i]).sum::<f64>() / n,
                c.iter().map(|&i| labels[i]).sum::<f64>() / n,
            )
        })
        .collect();
    Series { name: "observed default rate per PD decile".into(), points }
}

/// Score histogram by outcome: shares of defaults and non-defaults per score band of 20
/// equal-width bins.
pub fn distribution(points: &[f64], labels: &[f64]) -> Chart {
    let (lo, hi) = range(points.iter().copied());
    let bins = 20;
    let mut good = vec![0.0; bins];
    let mut bad = vec![0.0; bins];
    for (p, l) in points.iter().zip(labels) {
        let b =
            (((p - lo) / (hi - lo)) * bins as f64).floor().clamp(0.0, bins as f64 - 1.0) as usize;
        if *l > 0.5 {
            bad[b] += 1.0;
        } else {
            good[b] += 1.0;
        }
    }
    let share = |v: Vec<f64>| {
        let t: f64 = v.iter().sum::<f64>().max(1.0);
        v.into_iter().map(|x| x / t).collect::<Vec<_>>()
    };
    Chart::Bars {
        title: "Score distribution by outcome".into(),
        y: "share of the group".into(),
        categories: (0..bins)
            .map(|b| format!("{:.0}", lo + (b as f64 + 0.5) * (hi - lo) / bins as f64))
            .collect(),
        groups: vec![("non-defaults".into(), share(good)), ("defaults".into(), share(bad))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_kind_draws_marks() {
        let scores: Vec<f64> = (0..100).map(f64::from).collect();
        let labels: Vec<f64> = (0..100).map(|i| f64::from(i % 3 == 0)).collect();
        let (a, b) = ks_curves(&scores, &labels);
        let report = Report {
            title: "t <x>".into(),
            summary: vec!["AUC 0.5".into()],
            sections: vec![(
                "s".into(),
                vec![
                    Chart::Lines {
                        title: "ROC".into(),
                        x: "x".into(),
                        y: "y".into(),
                        series: vec![Series { name: "roc".into(), points: roc(&scores, &labels) }],
                    },
                    Chart::Lines {
                        title: "KS".into(),
                        x: "x".into(),
                        y: "y".into(),
                        series: vec![a, b],
                    },
                    distribution(&scores, &labels),
                ],
            )],
        };
        let page = html(&report);
        assert!(page.contains("data-charts=\"3\""));
        assert_eq!(page.matches("<svg class=\"chart\"").count(), 3);
        assert!(page.contains("t &lt;x&gt;"));
        let r = roc(&scores, &labels);
        assert_eq!(r.first(), Some(&(0.0, 0.0)));
        assert_eq!(r.last(), Some(&(1.0, 1.0)));
    }
}
