//! The report's figures as inline SVG, drawn with plotters' SVG backend:
//! line charts (sweeps, Pass@k), bar charts (distributions, causes) and
//! the DAG. Every plotted datum is one `<circle>`, so that a reader (or a
//! browser test) can count what a figure shows; legends and frames use
//! other shapes.

use plotters::coord::Shift;
use plotters::prelude::*;

/// A figure ready for the page.
pub struct Figure {
    pub title: String,
    /// Data points plotted (circles in the SVG).
    pub points: usize,
    pub svg: String,
}

/// One line of a line chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

const W: u32 = 640;
const H: u32 = 380;
const FONT: &str = "sans-serif";

/// Distinguishable colours (Tableau 10), cycled.
fn colour(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a figure: {e}")
}

/// The range a set of values is drawn over: padded, never empty.
fn span(values: impl Iterator<Item = f64>, from_zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero && lo > 0.0 {
        lo = 0.0;
    }
    if (hi - lo).abs() < f64::EPSILON {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.06;
    (if from_zero && lo >= 0.0 { lo } else { lo - pad }, hi + pad)
}

/// Whether values are best shown on a log axis: all positive and
/// spanning at least a decade and a half.
pub fn wants_log(values: &[f64]) -> bool {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    lo > 0.0 && hi / lo >= 30.0
}

/// Lines with a marker at every point; the x axis logarithmic if asked.
pub fn lines(title: &str, x_desc: &str, y_desc: &str, series: &[Series], log_x: bool) -> Result<Figure, String> {
    let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (y0, y1) = span(ys, true);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        if log_x {
            let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            draw_lines(&root, title, x_desc, y_desc, series, (lo / 1.3..hi * 1.3).log_scale(), y0..y1, true)?;
        } else {
            let (x0, x1) = span(xs.iter().copied(), false);
            draw_lines(&root, title, x_desc, y_desc, series, x0..x1, y0..y1, false)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Figure { title: title.into(), points: series.iter().map(|s| s.points.len()).sum(), svg })
}

#[allow(clippy::too_many_arguments)]
fn draw_lines<X>(
    root: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    x: X,
    y: std::ops::Range<f64>,
    log_x: bool,
) -> Result<(), String>
where
    X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 18))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    // Log axes get a label at 1, 2 and 5 of every decade, not at each tick.
    let x_label = |v: &f64| {
        let lead = v / 10f64.powf(v.abs().log10().floor());
        if !log_x || [1.0, 2.0, 5.0].iter().any(|d| (lead - d).abs() < 1e-6) {
            short(*v)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&x_label)
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let c = colour(i);
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], c.filled()));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled()))).map_err(err)?;
    }
    if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Bars over categories (or discrete values), a marker on each bar's top;
/// `mark` draws a vertical rule at a category index (e.g. a window).
pub fn bars(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    bars: &[(String, f64)],
    mark: Option<(f64, &str)>,
) -> Result<Figure, String> {
    let n = bars.len().max(1);
    let (_, y1) = span(bars.iter().map(|b| b.1), true);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(if bars.iter().any(|b| b.0.len() > 6) { 70 } else { 44 })
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..y1)
            .map_err(err)?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let step = n.div_ceil(16).max(1);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE.mix(0.0))
            .x_labels(n.min(16) + 1)
            .x_label_formatter(&|x: &f64| {
                let i = x.round();
                if (x - i).abs() > 1e-6 || i < 0.0 || !(i as usize).is_multiple_of(step) {
                    return String::new();
                }
                labels.get(i as usize).cloned().unwrap_or_default()
            })
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        let c = colour(0);
        chart
            .draw_series(
                bars.iter().enumerate().map(|(i, b)| {
                    Rectangle::new([(i as f64 - 0.38, 0.0), (i as f64 + 0.38, b.1)], c.mix(0.55).filled())
                }),
            )
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| Circle::new((i as f64, b.1), 3, c.filled())))
            .map_err(err)?;
        if let Some((at, label)) = mark {
            let red = colour(3);
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(at, 0.0), (at, y1)], red.stroke_width(2))))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    label.to_string(),
                    (at, y1 * 0.96),
                    (FONT, 13).into_font().color(&red),
                )))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Figure { title: title.into(), points: bars.len(), svg })
}

/// Values counted into `bins` equal bins over [0, max(values, top)]; the
/// bins that hold something, labelled by their upper bound, with their
/// count and upper bound; and the bins' width.
pub fn binned(values: &[f64], bins: usize, top: f64) -> (Vec<(String, f64, f64)>, f64) {
    let hi = values.iter().copied().fold(top, f64::max).max(1.0);
    let width = hi / bins as f64;
    let mut counts = vec![0u64; bins];
    for v in values {
        let b = ((v / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    let out = counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .map(|(b, c)| {
            let upper = width * (b + 1) as f64;
            (format!("≤{}", short(upper)), *c as f64, upper)
        })
        .collect();
    (out, width)
}

/// Three significant digits: 0.000123, 1.23, 123.
pub fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{v:.decimals$}")
}

/// 1234 → "1.2k", 5 → "5".
pub fn short(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A box of the DAG drawing.
pub struct Box {
    pub label: String,
    pub detail: String,
    /// cached | run | cannot
    pub state: &'static str,
    pub upstream: Vec<usize>,
}

/// The DAG, layered left to right by depth; a coloured dot per stage
/// (one point each) says its state.
pub fn dag(title: &str, boxes: &[Box]) -> Result<Figure, String> {
    let mut depth = vec![0usize; boxes.len()];
    for i in 0..boxes.len() {
        depth[i] = boxes[i].upstream.iter().filter(|u| **u < i).map(|u| depth[*u] + 1).max().unwrap_or(0);
    }
    let layers = depth.iter().max().map_or(1, |d| d + 1);
    let mut row = vec![0usize; boxes.len()];
    let mut filled = vec![0usize; layers];
    for i in 0..boxes.len() {
        row[i] = filled[depth[i]];
        filled[depth[i]] += 1;
    }
    let tallest = filled.iter().copied().max().unwrap_or(1);
    let (bw, bh, gx, gy) = (190i32, 44i32, 60i32, 14i32);
    let w = ((layers as i32 * (bw + gx) + gx) as u32).max(420);
    let h = (tallest as i32 * (bh + gy) + gy + 40) as u32;
    let at = |i: usize| (gx / 2 + depth[i] as i32 * (bw + gx), 40 + row[i] as i32 * (bh + gy));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        root.draw(&Text::new(title.to_string(), (10, 10), (FONT, 18).into_font())).map_err(err)?;
        let grey = RGBColor(120, 120, 120);
        for (i, b) in boxes.iter().enumerate() {
            let (x, y) = at(i);
            for u in b.upstream.iter().filter(|u| **u < i) {
                let (ux, uy) = at(*u);
                root.draw(&PathElement::new(vec![(ux + bw, uy + bh / 2), (x, y + bh / 2)], grey.stroke_width(1)))
                    .map_err(err)?;
            }
        }
        for (i, b) in boxes.iter().enumerate() {
            let (x, y) = at(i);
            let fill = match b.state {
                "cached" => RGBColor(212, 237, 218),
                "run" => RGBColor(255, 243, 205),
                _ => RGBColor(226, 227, 229),
            };
            root.draw(&Rectangle::new([(x, y), (x + bw, y + bh)], fill.filled())).map_err(err)?;
            root.draw(&Rectangle::new([(x, y), (x + bw, y + bh)], grey.stroke_width(1))).map_err(err)?;
            let dot = match b.state {
                "cached" => RGBColor(40, 140, 60),
                "run" => RGBColor(200, 140, 0),
                _ => grey,
            };
            root.draw(&Circle::new((x + 10, y + 12), 4, dot.filled())).map_err(err)?;
            root.draw(&Text::new(clip(&b.label, 26), (x + 20, y + 5), (FONT, 13).into_font())).map_err(err)?;
            root.draw(&Text::new(clip(&b.detail, 30), (x + 8, y + 25), (FONT, 11).into_font().color(&grey)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Figure { title: title.into(), points: boxes.len(), svg })
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_one_circle() {
        let s = vec![
            Series { name: "7B".into(), points: vec![(800.0, 0.2), (1600.0, 0.3), (100000.0, 0.5)] },
            Series { name: "32B".into(), points: vec![(800.0, 0.3), (100000.0, 0.6)] },
        ];
        let f = lines("resolved", "trajectories", "rate", &s, true).unwrap();
        assert_eq!(f.points, 5);
        assert_eq!(f.svg.matches("<circle").count(), 5, "{}", f.svg);
        let b = bars("exit", "reason", "n", &[("submitted".into(), 3.0), ("max_steps".into(), 1.0)], None).unwrap();
        assert_eq!(b.svg.matches("<circle").count(), 2);
    }

    #[test]
    fn log_axes_only_for_positive_values_spanning_decades() {
        assert!(wants_log(&[800.0, 1600.0, 100000.0]));
        assert!(!wants_log(&[1.0, 2.0, 4.0]));
        assert!(!wants_log(&[0.0, 100.0]));
    }

    #[test]
    fn bins_hold_every_value() {
        let (b, width) = binned(&[1.0, 2.0, 99.0, 100.0], 10, 100.0);
        assert_eq!(width, 10.0);
        assert_eq!(b.iter().map(|x| x.1).sum::<f64>(), 4.0);
        assert_eq!(b[0], ("≤10".to_string(), 2.0, 10.0));
    }
}
