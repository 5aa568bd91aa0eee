//! Dependency-free SVG plots for the evaluation report.
//!
//! The report (Markdown next to SVG files) needs three plot shapes: cumulative distributions
//! ([`cdf`]), stacked share bars ([`stacked_bars`]) and labelled horizontal bars ([`hbars`]).
//! A plotting crate would pull a large dependency tree (fonts, rasterisers, image codecs) for
//! that, so they are written here against `std` alone. Each function returns a standalone SVG
//! document as a `String`.
//!
//! Every function is total: empty input, NaN, infinities and negative values never panic and
//! never reach the output, coordinates carry at most 2 decimals, and all text is XML-escaped.

use std::fmt::Write as _;

/// `writeln!` into a `String`, which cannot fail.
macro_rules! emit {
    ($s:expr, $($arg:tt)*) => {{
        let _ = writeln!($s, $($arg)*);
    }};
}

/// One named series of points. For [`cdf`], the points are `(value, weight)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<'a> {
    /// Name shown in the legend.
    pub name: &'a str,
    /// The points; those with a non-finite coordinate are skipped.
    pub points: Vec<(f64, f64)>,
}

/// Distinguishable colours (Tableau 10), cycled.
const PALETTE: [&str; 8] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#9c755f"];
/// Top of every plot area, below the title.
const TOP: f64 = 44.0;
/// Left of the plot area when the y axis carries numbers.
const LEFT: f64 = 70.0;
/// Room for the legend right of the plot.
const LEGEND_W: f64 = 220.0;
/// Approximate width of one 12px sans-serif character.
const CHAR_W: f64 = 6.6;
/// Data is clamped into ±`BIG` so that spans and sums stay finite.
const BIG: f64 = 1e300;

/// The plot area, in pixels.
#[derive(Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// Data range `lo..hi` mapped onto pixels `from..to`, optionally logarithmic (then `lo > 0`).
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    fn px(&self, v: f64) -> f64 {
        let f = |v: f64| if self.log { v.max(f64::MIN_POSITIVE).log10() } else { v };
        let (v, lo, hi) = (f(v), f(self.lo), f(self.hi));
        let t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
        self.from + t * (self.to - self.from)
    }
}

/// Cumulative weight share of each series over its values, as step lines.
///
/// Points are `(value, weight)`; each series is sorted by value and drawn from share 0 at its
/// smallest value to share 1 at its largest (y label "share"). Points with a non-finite value,
/// a non-finite or non-positive weight, or (when `log_x`) a non-positive value are skipped.
/// A legend names the series when there are several. Without any point left, the plot says
/// "no data".
pub fn cdf(title: &str, x_label: &str, series: &[Series<'_>], log_x: bool) -> String {
    let floor = if log_x { 1.0 / BIG } else { -BIG };
    let cleaned: Vec<_> = series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let mut pts: Vec<(f64, f64)> = (s.points.iter().copied())
                .filter(|&(v, w)| v.is_finite() && w.is_finite() && w > 0.0 && (!log_x || v > 0.0))
                .map(|(v, w)| (v.clamp(floor, BIG), w))
                .collect();
            // Weights are rescaled to at most 1 so that their sum stays finite.
            let wmax = pts.iter().fold(0.0_f64, |m, p| m.max(p.1));
            if wmax <= 0.0 {
                return None;
            }
            pts.iter_mut().for_each(|p| p.1 /= wmax);
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Some((i, s.name, pts))
        })
        .collect();
    if cleaned.is_empty() {
        return no_data(title);
    }
    let (min, max) = (cleaned.iter().flat_map(|c| &c.2))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (lo, hi, ticks) = if log_x { log_ticks(min, max) } else { linear_ticks(min, max) };

    let with_legend = series.len() > 1;
    let f = Frame { left: LEFT, right: LEFT + 560.0, top: TOP, bottom: TOP + 320.0 };
    let w = f.right + if with_legend { LEGEND_W } else { 30.0 };
    let h = (f.bottom + 56.0).max(legend_height(cleaned.len()));
    let x = Scale { lo, hi, log: log_x, from: f.left, to: f.right };
    let y = Scale { lo: 0.0, hi: 1.0, log: false, from: f.bottom, to: f.top };
    let xt: Vec<_> = ticks.iter().map(|&t| (x.px(t), fmt_sig(t))).collect();
    let yt: Vec<_> = [0.0, 0.25, 0.5, 0.75, 1.0].iter().map(|&t| (y.px(t), fmt_sig(t))).collect();

    let mut s = open(w, h, title);
    axes(&mut s, f, &xt, &yt, x_label, "share");
    emit!(s, r#"<g class="series" fill="none" stroke-width="1.5">"#);
    for (i, name, pts) in &cleaned {
        // Summed in the same order as `cum` below, so the last share is exactly 1.
        let total: f64 = pts.iter().map(|p| p.1).sum();
        let mut line = vec![(pts.first().map_or(f.left, |p| x.px(p.0)), f.bottom)];
        let mut cum = 0.0;
        for &(v, weight) in pts {
            cum += weight;
            let (px, prev) = (x.px(v), line.last().map_or(f.bottom, |p| p.1));
            push_point(&mut line, (px, prev));
            push_point(&mut line, (px, y.px((cum / total).min(1.0))));
        }
        let points: Vec<String> = line.iter().map(|&(a, b)| format!("{},{}", num(a), num(b))).collect();
        let (points, stroke, name) = (points.join(" "), colour(*i), esc(name));
        emit!(s, r#"<polyline points="{points}" stroke="{stroke}"><title>{name}</title></polyline>"#);
    }
    emit!(s, "</g>");
    if with_legend {
        let entries: Vec<_> = cleaned.iter().map(|c| (c.1, colour(c.0))).collect();
        legend(&mut s, f.right + 20.0, &entries);
    }
    close(s)
}

/// One vertical bar per row, stacked from its values in category order, as shares (0–100%).
///
/// Row labels sit under the bars (rotated when there are more than 12 rows); bars narrow to fit
/// about 100 rows. Values beyond `categories.len()` are ignored; negative and non-finite values
/// count as 0, and a row summing to 0 draws an empty outlined bar. A legend maps categories to
/// colours.
pub fn stacked_bars(title: &str, categories: &[&str], rows: &[(String, Vec<f64>)]) -> String {
    if rows.is_empty() {
        return no_data(title);
    }
    let n = rows.len() as f64;
    let rotate = rows.len() > 12;
    let wanted = if rotate { (1400.0 / n).min(24.0) } else { 56.0 };
    let slot = (wanted * n).max(320.0) / n;
    let bar_w = (slot * 0.75).min(40.0);
    let font = if rotate { (slot * 0.9).clamp(6.0, 11.0) } else { 11.0 };
    let max_chars = if rotate { 30 } else { ((slot / CHAR_W) as usize).max(3) };
    let labels: Vec<String> = rows.iter().map(|(l, _)| truncate(l, max_chars)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
    let label_h = if rotate { longest * font * 0.5 + 20.0 } else { 30.0 };

    // A rotated label reaches left by about half its length.
    let left = if rotate { LEFT.max(longest * font * 0.3 + 10.0) } else { LEFT };
    let f = Frame { left, right: left + slot * n, top: TOP, bottom: TOP + 300.0 };
    let h = (f.bottom + label_h + 10.0).max(legend_height(categories.len()));
    let y = Scale { lo: 0.0, hi: 100.0, log: false, from: f.bottom, to: f.top };
    let yt: Vec<_> = (0..=5).map(|k| (y.px(f64::from(k * 20)), format!("{}%", k * 20))).collect();

    let mut s = open(f.right + LEGEND_W, h, title);
    axes(&mut s, f, &[], &yt, "", "share (%)");
    for (r, ((name, values), label)) in rows.iter().zip(&labels).enumerate() {
        let cx = f.left + slot * (r as f64 + 0.5);
        let (x0, width, label) = (num(cx - bar_w / 2.0), num(bar_w), esc(label));
        let rect = format!(r#"<rect x="{x0}" width="{width}""#);
        emit!(s, r#"<g class="bar">"#);
        match shares(values, categories.len()) {
            None => {
                let (top, height) = (num(f.top), num(f.bottom - f.top));
                emit!(s, r#"{rect} y="{top}" height="{height}" fill="none" stroke="lightgray"/>"#);
            }
            Some(shares) => {
                let mut top = f.bottom;
                for (c, (share, category)) in shares.iter().zip(categories).enumerate() {
                    let height = share * (f.bottom - f.top);
                    if height <= 0.0 {
                        continue;
                    }
                    top -= height;
                    let (y, h, fill) = (num(top), num(height), colour(c));
                    let tip = format!("{}, {}: {}%", esc(name), esc(category), fmt_sig(share * 100.0));
                    emit!(s, r#"{rect} y="{y}" height="{h}" fill="{fill}"><title>{tip}</title></rect>"#);
                }
            }
        }
        if rotate {
            let (x, y, size) = (num(cx), num(f.bottom + 10.0), num(font));
            let at = format!(r#"transform="translate({x},{y}) rotate(-60)" dy="0.35em" text-anchor="end""#);
            emit!(s, r#"<text {at} font-size="{size}">{label}</text>"#);
        } else {
            let (x, y) = (num(cx), num(f.bottom + 18.0));
            emit!(s, r#"<text x="{x}" y="{y}" text-anchor="middle" font-size="11">{label}</text>"#);
        }
        emit!(s, "</g>");
    }
    let entries: Vec<_> = categories.iter().enumerate().map(|(c, name)| (*name, colour(c))).collect();
    legend(&mut s, f.right + 20.0, &entries);
    close(s)
}

/// Horizontal bars from 0 to the largest value, one per item: the name on the left, the value
/// (3 significant digits, then `unit`) at the bar's end. Negative and non-finite values draw
/// no bar; a non-finite value reads "n/a".
pub fn hbars(title: &str, unit: &str, items: &[(String, f64)]) -> String {
    const ROW: f64 = 22.0;
    if items.is_empty() {
        return no_data(title);
    }
    let length = |v: f64| if v.is_finite() && v > 0.0 { v.min(BIG) } else { 0.0 };
    let max = items.iter().fold(0.0_f64, |m, item| m.max(length(item.1)));
    let (_, hi, ticks) = linear_ticks(0.0, if max > 0.0 { max } else { 1.0 });
    let unit = truncate(unit, 20);
    let names: Vec<String> = items.iter().map(|(name, _)| truncate(name, 40)).collect();
    let values: Vec<String> = items.iter().map(|&(_, v)| value_label(v, &unit)).collect();

    let left = widest(&names).max(40.0) + 20.0;
    let f = Frame { left, right: left + 480.0, top: TOP, bottom: TOP + ROW * items.len() as f64 };
    let x = Scale { lo: 0.0, hi, log: false, from: f.left, to: f.right };
    let xt: Vec<_> = ticks.iter().map(|&t| (x.px(t), fmt_sig(t))).collect();

    let mut s = open(f.right + widest(&values) + 20.0, f.bottom + 56.0, title);
    axes(&mut s, f, &xt, &[], &unit, "");
    emit!(s, r#"<g class="bars">"#);
    for (i, ((name, value), (_, v))) in names.iter().zip(&values).zip(items).enumerate() {
        let (row, end) = (f.top + ROW * i as f64, x.px(length(*v)));
        let (x, y, width, height, fill) = (num(f.left), num(row + 4.0), num(end - f.left), num(ROW - 8.0), PALETTE[0]);
        emit!(s, r#"<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="{fill}"/>"#);
        let text_y = num(row + ROW / 2.0 + 4.0);
        emit!(s, r#"<text x="{}" y="{text_y}" text-anchor="end">{}</text>"#, num(f.left - 6.0), esc(name));
        emit!(s, r#"<text x="{}" y="{text_y}">{}</text>"#, num(end + 4.0), esc(value));
    }
    emit!(s, "</g>");
    close(s)
}

/// The document head: size, white background and the title.
fn open(w: f64, h: f64, title: &str) -> String {
    let title = truncate(title, 120);
    let w = w.max(title.chars().count() as f64 * 9.0 + 40.0);
    let mut s = String::new();
    let (width, height, middle, title) = (num(w), num(h), num(w / 2.0), esc(&title));
    let size = format!(r#"width="{width}" height="{height}" viewBox="0 0 {width} {height}""#);
    emit!(s, r#"<svg xmlns="http://www.w3.org/2000/svg" {size} font-family="sans-serif" font-size="12">"#);
    emit!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    emit!(s, r#"<text x="{middle}" y="26" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>"#);
    s
}

fn close(mut s: String) -> String {
    s.push_str("</svg>\n");
    s
}

fn no_data(title: &str) -> String {
    let mut s = open(480.0, 200.0, title);
    emit!(s, r#"<text x="240" y="110" text-anchor="middle" fill="gray">no data</text>"#);
    close(s)
}

/// Axis lines, ticks `(pixel, label)` with light grid lines, and the axis titles (empty: none).
fn axes(s: &mut String, f: Frame, xt: &[(f64, String)], yt: &[(f64, String)], x_title: &str, y_title: &str) {
    let (left, right, top, bottom) = (num(f.left), num(f.right), num(f.top), num(f.bottom));
    emit!(s, r#"<g class="axes">"#);
    for (x, label) in xt {
        let x = num(*x);
        emit!(s, r#"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="gainsboro"/>"#);
        emit!(s, r#"<line x1="{x}" y1="{bottom}" x2="{x}" y2="{}" stroke="black"/>"#, num(f.bottom + 5.0));
        emit!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#, num(f.bottom + 18.0), esc(label));
    }
    for (y, label) in yt {
        let y = num(*y);
        emit!(s, r#"<line x1="{left}" y1="{y}" x2="{right}" y2="{y}" stroke="gainsboro"/>"#);
        emit!(s, r#"<line x1="{}" y1="{y}" x2="{left}" y2="{y}" stroke="black"/>"#, num(f.left - 5.0));
        emit!(s, r#"<text x="{}" y="{y}" dy="4" text-anchor="end">{}</text>"#, num(f.left - 8.0), esc(label));
    }
    emit!(s, r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>"#);
    emit!(s, r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>"#);
    if !x_title.is_empty() {
        let x = num((f.left + f.right) / 2.0);
        let title = esc(&truncate(x_title, 80));
        emit!(s, r#"<text x="{x}" y="{}" text-anchor="middle">{title}</text>"#, num(f.bottom + 38.0));
    }
    if !y_title.is_empty() {
        let (x, y) = (num(f.left - 50.0), num((f.top + f.bottom) / 2.0));
        emit!(s, r#"<text transform="translate({x},{y}) rotate(-90)" text-anchor="middle">{}</text>"#, esc(y_title));
    }
    emit!(s, "</g>");
}

/// Colour swatches with names, one per line, from the top of the plot at `x`.
fn legend(s: &mut String, x: f64, entries: &[(&str, &str)]) {
    emit!(s, r#"<g class="legend">"#);
    for (i, (name, fill)) in entries.iter().enumerate() {
        let y = TOP + 18.0 * i as f64;
        emit!(s, r#"<rect x="{}" y="{}" width="12" height="12" fill="{fill}"/>"#, num(x), num(y));
        emit!(s, r#"<text x="{}" y="{}">{}</text>"#, num(x + 18.0), num(y + 10.0), esc(&truncate(name, 26)));
    }
    emit!(s, "</g>");
}

/// Approximate width of the widest text.
fn widest(texts: &[String]) -> f64 {
    texts.iter().map(|t| t.chars().count()).max().unwrap_or(0) as f64 * CHAR_W
}

fn legend_height(entries: usize) -> f64 {
    TOP + 18.0 * entries as f64 + 20.0
}

fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Appends a point, dropping the previous one when it sits inside a vertical or horizontal run
/// (within a quarter pixel), which keeps long step lines short.
fn push_point(line: &mut Vec<(f64, f64)>, p: (f64, f64)) {
    let near = |a: f64, b: f64| (a - b).abs() < 0.25;
    let inner = matches!(line.as_slice(), [.., a, b]
        if (near(a.0, b.0) && near(b.0, p.0)) || (near(a.1, b.1) && near(b.1, p.1)));
    if inner {
        line.pop();
    }
    line.push(p);
}

/// Shares (summing to 1) of the first `n` values, negative and non-finite ones counting as 0;
/// `None` when they sum to 0.
fn shares(values: &[f64], n: usize) -> Option<Vec<f64>> {
    let v: Vec<f64> = values.iter().take(n).map(|&v| if v.is_finite() && v > 0.0 { v } else { 0.0 }).collect();
    // Divided by the largest first, so that the sum stays finite.
    let max = v.iter().fold(0.0_f64, |m, &x| m.max(x));
    if max <= 0.0 {
        return None;
    }
    let total: f64 = v.iter().map(|x| x / max).sum();
    Some(v.iter().map(|x| x / max / total).collect())
}

/// Ticks at whole steps of 1, 2 or 5 × 10^k, and the range widened to them.
fn linear_ticks(min: f64, max: f64) -> (f64, f64, Vec<f64>) {
    let finite = |v: f64| if v.is_finite() { v.clamp(-BIG, BIG) } else { 0.0 };
    let (mut lo, mut hi) = (finite(min), finite(max));
    if hi <= lo {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo, hi) = (lo - pad, lo + pad);
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10_f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| raw <= s).unwrap_or(1.0);
    let step = if step.is_finite() && step > 0.0 { step } else { 1.0 };
    let (k0, k1) = ((lo / step).floor(), (hi / step).ceil());
    let count = ((k1 - k0) as usize).min(50);
    (k0 * step, k1 * step, (0..=count).map(|i| (k0 + i as f64) * step).collect())
}

/// A range widened to whole decades, with ticks at powers of 10 (thinned to about 10) and at
/// their 2 and 5 multiples when the range spans at most 3 decades.
fn log_ticks(min: f64, max: f64) -> (f64, f64, Vec<f64>) {
    let exp = |v: f64| if v.is_finite() { v.clamp(1.0 / BIG, BIG).log10() } else { 0.0 };
    let e0 = exp(min).floor() as i32;
    let e1 = (exp(max).ceil() as i32).max(e0 + 1);
    let decades = e1 - e0;
    let multiples: &[f64] = if decades <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let stride = usize::try_from((decades + 9) / 10).unwrap_or(1).max(1);
    let ticks = (e0..=e1)
        .step_by(stride)
        .flat_map(|e| multiples.iter().take(if e < e1 { 3 } else { 1 }).map(move |m| m * 10_f64.powi(e)))
        .collect();
    (10_f64.powi(e0), 10_f64.powi(e1), ticks)
}

/// A coordinate: at most 2 decimals, no trailing zeros; non-finite as 0.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".to_owned();
    }
    trim_zeros(&format!("{:.2}", v.clamp(-1e9, 1e9)))
}

/// A value with up to 3 significant digits; scientific below 0.001 and from 10^6.
fn fmt_sig(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".to_owned();
    }
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        return match s.split_once('e') {
            Some((mantissa, e)) => format!("{}e{e}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let mag = a.log10().floor() as i32;
    let rounded = if mag > 2 { (v / 10_f64.powi(mag - 2)).round() * 10_f64.powi(mag - 2) } else { v };
    trim_zeros(&format!("{:.*}", usize::try_from(2 - mag).unwrap_or(0), rounded))
}

fn trim_zeros(s: &str) -> String {
    let t = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { s };
    if t == "-0" { "0".to_owned() } else { t.to_owned() }
}

fn value_label(v: f64, unit: &str) -> String {
    let sep = if unit.is_empty() || unit.starts_with('%') { "" } else { " " };
    if v.is_finite() { format!("{}{sep}{unit}", fmt_sig(v)) } else { "n/a".to_owned() }
}

/// At most `max` characters, the last one an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// XML-escaped text; control characters (invalid in XML) are dropped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTTOM: f64 = TOP + 320.0;

    /// Well-formedness and cleanliness every plot must have.
    fn check(svg: &str) {
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>\n"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count(), "{svg}");
        assert_eq!(svg.matches('<').count(), svg.matches('>').count(), "{svg}");
        // Inside attribute values (odd segments between quotes), at most 2 decimals.
        for value in svg.split('"').skip(1).step_by(2) {
            for part in value.split('.').skip(1) {
                assert!(part.chars().take_while(char::is_ascii_digit).count() <= 2, "{value}");
            }
        }
    }

    fn attr(tag: &str, name: &str) -> Option<f64> {
        tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()?.parse().ok()
    }

    fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
        let point = |p: &str| {
            let (x, y) = p.split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        };
        (svg.split("<polyline points=\"").skip(1))
            .map(|rest| rest.split('"').next().unwrap_or("").split(' ').filter_map(point).collect())
            .collect()
    }

    /// Per bar group: the summed heights of its coloured segments, or `None` for an empty bar.
    fn bar_heights(svg: &str) -> Vec<Option<f64>> {
        (svg.split(r#"<g class="bar">"#).skip(1))
            .map(|group| {
                let body = group.split("</g>").next().unwrap_or("");
                let segments: Vec<&str> = body.split("<rect").skip(1).filter(|t| t.contains("fill=\"#")).collect();
                (!segments.is_empty()).then(|| segments.iter().filter_map(|t| attr(t, "height")).sum())
            })
            .collect()
    }

    /// Checks a CDF line: from share 0, monotone, ending at share 1 (the top of the plot).
    fn check_cdf_lines(svg: &str, expected: usize) {
        let lines = polylines(svg);
        assert_eq!(lines.len(), expected, "{svg}");
        for line in &lines {
            let (Some(first), Some(last)) = (line.first(), line.last()) else { panic!("empty line in {svg}") };
            assert!((first.1 - BOTTOM).abs() < 0.01, "{line:?}");
            assert!((last.1 - TOP).abs() < 0.01, "{line:?}");
            assert!(line.windows(2).all(|w| w[1].0 >= w[0].0 - 0.01 && w[1].1 <= w[0].1 + 0.01), "{line:?}");
        }
    }

    #[test]
    fn cdf_normal() {
        let a = Series { name: "alpha", points: vec![(10.0, 2.0), (1.0, 1.0), (100.0, 1.0), (5.0, 0.5)] };
        let b = Series { name: "beta", points: (1..=5000).map(|i| (f64::from(i), 1.0)).collect() };
        for log in [false, true] {
            let svg = cdf("latency", "µs", &[a.clone(), b.clone()], log);
            check(&svg);
            check_cdf_lines(&svg, 2);
            assert!(svg.contains("alpha") && svg.contains(r#"class="legend""#) && svg.contains(">share<"));
        }
        // Four equal weights: the steps sit at quarters of the plot height.
        let quarters = Series { name: "q", points: vec![(4.0, 1.0), (2.0, 1.0), (3.0, 1.0), (1.0, 1.0)] };
        let svg = cdf("q", "x", &[quarters], false);
        check(&svg);
        check_cdf_lines(&svg, 1);
        assert!(!svg.contains(r#"class="legend""#));
        let mut ys: Vec<f64> = polylines(&svg)[0].iter().map(|p| p.1).collect();
        ys.dedup();
        assert_eq!(ys, [BOTTOM, BOTTOM - 80.0, BOTTOM - 160.0, BOTTOM - 240.0, TOP]);
    }

    #[test]
    fn cdf_empty() {
        for series in [vec![], vec![Series { name: "e", points: vec![] }]] {
            let svg = cdf("t", "x", &series, false);
            check(&svg);
            assert!(svg.contains("no data"));
        }
        let nan = Series { name: "n", points: vec![(f64::NAN, 1.0), (-1.0, 1.0), (0.0, 1.0)] };
        assert!(cdf("t", "x", &[nan], true).contains("no data"));
    }

    #[test]
    fn cdf_hostile() {
        let hostile = Series {
            name: "<&> \"q\" 'a'",
            points: vec![
                (f64::NAN, 1.0),
                (f64::INFINITY, 1.0),
                (f64::NEG_INFINITY, 1.0),
                (-5.0, 1.0),
                (0.0, 1.0),
                (3.0, f64::NAN),
                (2.0, -1.0),
                (7.0, 0.0),
                (f64::MAX, f64::MAX),
                (1e-320, f64::MAX),
            ],
        };
        let single = Series { name: "one", points: vec![(5.0, 1.0)] };
        let empty = Series { name: "empty", points: vec![] };
        for log in [false, true] {
            let svg = cdf("<&>", "x <&>", &[hostile.clone(), single.clone(), empty.clone()], log);
            check(&svg);
            check_cdf_lines(&svg, 2);
            assert!(!svg.contains("<&>") && svg.contains("&lt;&amp;&gt; &quot;q&quot; &apos;a&apos;"));
            assert!(!svg.contains(">empty<"));
        }
    }

    #[test]
    fn stacked_bars_normal() {
        let rows = vec![
            ("a".to_owned(), vec![1.0, 1.0, 2.0]),
            ("b".to_owned(), vec![0.0, 3.0, 0.0]),
            ("c".to_owned(), vec![0.0, 0.0, 0.0]),
        ];
        let svg = stacked_bars("outcomes", &["hit", "miss", "skip"], &rows);
        check(&svg);
        let heights = bar_heights(&svg);
        assert_eq!(heights.len(), 3);
        assert!(heights[..2].iter().all(|h| h.is_some_and(|h| (h - 300.0).abs() < 0.05)), "{heights:?}");
        assert_eq!(heights[2], None);
        assert!(svg.contains("a, skip: 50%") && svg.contains(">skip<") && !svg.contains("rotate(-60)"));

        let many: Vec<_> = (0..100).map(|i| (format!("block {i}"), vec![f64::from(i), 1.0])).collect();
        let svg = stacked_bars("many", &["x", "y"], &many);
        check(&svg);
        assert_eq!(bar_heights(&svg).len(), 100);
        assert_eq!(svg.matches("rotate(-60)").count(), 100);
    }

    #[test]
    fn stacked_bars_empty_and_hostile() {
        let svg = stacked_bars("t", &["a"], &[]);
        check(&svg);
        assert!(svg.contains("no data"));
        let rows = vec![
            ("x<&>y".to_owned(), vec![f64::NAN, f64::INFINITY]),
            ("neg".to_owned(), vec![-1.0, 2.0]),
            ("short".to_owned(), vec![]),
            ("long".to_owned(), vec![1.0, 1.0, 5.0]),
            ("max".to_owned(), vec![f64::MAX, f64::MAX]),
        ];
        let svg = stacked_bars("<&>", &["<&>", "b"], &rows);
        check(&svg);
        assert!(!svg.contains("<&>") && svg.contains("x&lt;&amp;&gt;y"));
        let heights = bar_heights(&svg);
        assert_eq!(heights[..3], [None, Some(300.0), None]);
        assert!(heights[3..].iter().all(|h| h.is_some_and(|h| (h - 300.0).abs() < 0.05)), "{heights:?}");
        let svg = stacked_bars("no categories", &[], &rows);
        check(&svg);
        assert!(bar_heights(&svg).iter().all(Option::is_none));
    }

    #[test]
    fn hbars_normal() {
        let items = vec![("a".to_owned(), 10.0), ("b".to_owned(), 5.0), ("c".to_owned(), 12.345)];
        let svg = hbars("time", "ms", &items);
        check(&svg);
        assert!(svg.contains(">12.3 ms<") && svg.contains(">5 ms<"));
        let widths: Vec<f64> =
            svg.split("<rect").filter(|t| t.contains("fill=\"#")).filter_map(|t| attr(t, "width")).collect();
        assert_eq!(widths.len(), 3);
        assert!((widths[0] - 2.0 * widths[1]).abs() < 0.02, "{widths:?}");
        assert!(widths[2] > widths[0] && widths[2] <= 480.0);
    }

    #[test]
    fn hbars_empty_and_hostile() {
        let svg = hbars("t", "ms", &[]);
        check(&svg);
        assert!(svg.contains("no data"));
        let items = vec![
            ("<&>".to_owned(), f64::NAN),
            ("neg".to_owned(), -3.0),
            ("zero".to_owned(), 0.0),
            ("plus-big".to_owned(), f64::INFINITY),
            ("huge".to_owned(), f64::MAX),
        ];
        let svg = hbars("<&>", "<u>", &items);
        check(&svg);
        assert!(!svg.contains("<&>") && svg.contains(">&lt;&amp;&gt;<") && svg.contains(">n/a<"));
        assert!(svg.contains(">-3 &lt;u&gt;<"));
        let svg = hbars("zeros", "", &[("z".to_owned(), 0.0)]);
        check(&svg);
        assert!(svg.contains(">0<"));
    }

    #[test]
    fn formatting() {
        assert_eq!(num(1.0 / 3.0), "0.33");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(fmt_sig(123_456.0), "123000");
        assert_eq!(fmt_sig(12.345), "12.3");
        assert_eq!(fmt_sig(0.000_123_4), "1.23e-4");
        assert_eq!(fmt_sig(2.5e6), "2.5e6");
        assert_eq!(fmt_sig(-0.5), "-0.5");
        assert_eq!(fmt_sig(0.0), "0");
        assert_eq!(esc("<&>\"'\u{0}é"), "&lt;&amp;&gt;&quot;&apos;é");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(log_ticks(3.0, 40.0).2, [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
        assert_eq!(linear_ticks(0.0, 9.0).2, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }
}
