//! The report's charts, drawn as inline SVG: a stacked column chart over time, horizontal bars,
//! a histogram, and a sparkline. Small and dependency-free; no script draws anything.
//!
//! Every label passes through [`escape`]: the text comes from the log. Each bar carries a
//! `<title>` with its exact number, which a browser shows on hover, and every chart has a
//! `role="img"` and an `aria-label` saying what it shows.

use std::fmt::Write;

/// Colours for the series, told apart also by people with the common colour blindnesses
/// (Okabe and Ito's palette), then a grey for "others".
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#777777",
];

/// Text for HTML and SVG: `&`, `<`, `>`, `"` and `'` escaped, control characters shown as `?`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The axis of values up to `max`: a round step (1, 2 or 5 times a power of ten) and the top,
/// a multiple of it, with at most five steps.
fn nice_axis(max: u64) -> (u64, u64) {
    let max = max.max(1);
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if s.saturating_mul(5) >= max || s == u64::MAX {
                let top = max.div_ceil(s).saturating_mul(s);
                return (s, top.max(s));
            }
        }
        step = step.saturating_mul(10);
    }
}

/// One series of a stacked column chart.
pub struct Series<'a> {
    /// Its name, in the legend and the titles.
    pub name: &'a str,
    /// Its value in each column.
    pub values: Vec<u64>,
}

/// A stacked column chart: `labels[i]` names column i in its hover titles, `ticks` are the
/// labels drawn under some columns, each series a colour from [`PALETTE`] in order.
pub fn stacked_columns(
    aria: &str,
    labels: &[String],
    ticks: &[(usize, String)],
    series: &[Series<'_>],
    width: u32,
    height: u32,
) -> String {
    let n = labels.len().max(1);
    let (left, right, top, bottom) = (56.0, 8.0, 10.0, 34.0);
    let plot_w = f64::from(width) - left - right;
    let plot_h = f64::from(height) - top - bottom;
    let totals: Vec<u64> = (0..n)
        .map(|i| series.iter().map(|s| s.values.get(i).copied().unwrap_or(0)).sum())
        .collect();
    let (step, max) = nice_axis(totals.iter().copied().max().unwrap_or(0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{}">"#,
        escape(aria)
    );
    axis_y(&mut svg, step, max, left, top, plot_w, plot_h);
    let col = plot_w / n as f64;
    let bar = (col * 0.85).max(1.0);
    for i in 0..n {
        let x = left + col * i as f64 + (col - bar) / 2.0;
        let mut y = top + plot_h;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = plot_h * v as f64 / max as f64;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}" fill="{}"><title>{} · {}: {}</title></rect>"#,
                PALETTE[k.min(PALETTE.len() - 1)],
                escape(labels.get(i).map(String::as_str).unwrap_or("")),
                escape(s.name),
                thousands(v)
            );
        }
    }
    for (i, text) in ticks {
        // A tick at the column's left edge: the bucket starts there.
        let x = left + col * *i as f64;
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{y1:.1}" class="tick"/><text x="{x:.1}" y="{ty:.1}" text-anchor="middle" class="lab">{}</text>"#,
            escape(text),
            y0 = top + plot_h,
            y1 = top + plot_h + 4.0,
            ty = top + plot_h + 18.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The y axis: a gridline and its value at each `step` up to `max`.
fn axis_y(svg: &mut String, step: u64, max: u64, left: f64, top: f64, plot_w: f64, plot_h: f64) {
    let mut v = 0u64;
    loop {
        let y = top + plot_h - plot_h * v as f64 / max as f64;
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" class="{}"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="lab">{}</text>"#,
            if v == 0 { "axis" } else { "grid" },
            thousands(v),
            x2 = left + plot_w,
            tx = left - 6.0,
            ty = y + 4.0
        );
        match v.checked_add(step) {
            Some(n) if n <= max => v = n,
            _ => break,
        }
    }
}

/// Horizontal bars, one row per `(label, value)`, longest value full width.
pub fn bars(aria: &str, rows: &[(String, u64)], width: u32) -> String {
    let row_h = 22.0;
    let label_w = (f64::from(width) * 0.38).min(320.0);
    let value_w = 90.0;
    let plot_w = f64::from(width) - label_w - value_w - 12.0;
    let height = (row_h * rows.len() as f64 + 4.0).max(row_h);
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{}">"#,
        escape(aria)
    );
    // Labels are cut to what fits, about 7 px a character; the table beside has them whole.
    let fits = ((label_w - 8.0) / 7.0) as usize;
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 2.0 + row_h * i as f64;
        let w = (plot_w * *v as f64 / max as f64).max(1.0);
        let shown: String = if label.chars().count() > fits {
            label.chars().take(fits.saturating_sub(1)).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            svg,
            r#"<text x="{lx:.1}" y="{ty:.1}" text-anchor="end" class="lab">{}</text><rect x="{label_w:.1}" y="{ry:.1}" width="{w:.1}" height="{rh:.1}" fill="{}"><title>{}: {}</title></rect><text x="{vx:.1}" y="{ty:.1}" class="lab">{}</text>"#,
            escape(&shown),
            PALETTE[0],
            escape(label),
            thousands(*v),
            thousands(*v),
            lx = label_w - 8.0,
            ty = y + 15.0,
            ry = y + 3.0,
            rh = row_h - 6.0,
            vx = label_w + w + 6.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram: a column per bucket, labelled under it.
pub fn histogram(aria: &str, buckets: &[(String, u64)], width: u32, height: u32) -> String {
    let labels: Vec<String> = buckets.iter().map(|b| b.0.clone()).collect();
    let n = buckets.len().max(1);
    let (left, right, top, bottom) = (56.0, 8.0, 10.0, 34.0);
    let plot_w = f64::from(width) - left - right;
    let plot_h = f64::from(height) - top - bottom;
    let (step, max) = nice_axis(buckets.iter().map(|b| b.1).max().unwrap_or(0));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{}">"#,
        escape(aria)
    );
    axis_y(&mut svg, step, max, left, top, plot_w, plot_h);
    let col = plot_w / n as f64;
    for (i, (label, v)) in buckets.iter().enumerate() {
        let h = plot_h * *v as f64 / max as f64;
        let x = left + col * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{bx:.1}" y="{y:.1}" width="{bw:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect><text x="{cx:.1}" y="{ty:.1}" text-anchor="middle" class="lab small">{}</text>"#,
            PALETTE[2],
            escape(label),
            thousands(*v),
            escape(&labels[i]),
            bx = x + 1.0,
            bw = (col - 2.0).max(1.0),
            y = top + plot_h - h,
            cx = x + col / 2.0,
            ty = top + plot_h + 16.0
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A sparkline of `values` (a small filled line), for a table cell.
pub fn sparkline(values: &[u64], width: u32, height: u32) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(2) - 1;
    let (w, h) = (f64::from(width), f64::from(height));
    let mut points = format!("0,{h}");
    for (i, v) in values.iter().enumerate() {
        let x = w * i as f64 / n as f64;
        let y = h - 1.0 - (h - 2.0) * *v as f64 / max as f64;
        let _ = write!(points, " {x:.1},{y:.1}");
    }
    let _ = write!(points, " {w},{h}");
    format!(
        r#"<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" aria-hidden="true"><polygon points="{points}" fill="{}" opacity="0.35"/></svg>"#,
        PALETTE[0]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_the_log_is_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'\u{7}"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;?"
        );
        let svg = bars("x", &[("</svg><script>".into(), 3)], 600);
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn numbers_and_axes() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(nice_axis(0), (1, 1));
        assert_eq!(nice_axis(7), (2, 8));
        assert_eq!(nice_axis(42), (10, 50));
        assert_eq!(nice_axis(1493), (500, 1500));
        assert!(nice_axis(u64::MAX).1 >= u64::MAX / 2);
    }
}
