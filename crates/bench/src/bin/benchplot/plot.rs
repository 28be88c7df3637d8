//! Line charts as SVG with plotters: one function, log axes done by hand.
//!
//! Text is written as SVG `<text>` and laid out with plotters' built-in size
//! estimate, so no font files or font libraries are needed on the machine.

use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

/// One line: its legend name and points in data units.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (etcd, the reference), otherwise solid with markers.
    pub dashed: bool,
    /// Index into the palette, so a level keeps its colour across charts.
    pub colour: usize,
}

/// An axis: its label, whether it is logarithmic, and optional names for
/// whole-number positions (a categorical axis such as p50, p90, ...).
pub struct Axis {
    pub label: String,
    pub log: bool,
    pub categories: Vec<String>,
}

impl Axis {
    pub fn linear(label: &str) -> Axis {
        Axis {
            label: label.into(),
            log: false,
            categories: Vec::new(),
        }
    }

    pub fn log(label: &str) -> Axis {
        Axis {
            log: true,
            ..Axis::linear(label)
        }
    }

    pub fn categories(label: &str, names: &[&str]) -> Axis {
        Axis {
            categories: names.iter().map(|s| s.to_string()).collect(),
            ..Axis::linear(label)
        }
    }

    fn to_plot(&self, v: f64) -> f64 {
        if self.log {
            v.max(1e-9).log10()
        } else {
            v
        }
    }

    fn format(&self, v: f64) -> String {
        if !self.categories.is_empty() {
            let i = v.round();
            if (v - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            return self.categories.get(i as usize).cloned().unwrap_or_default();
        }
        let x = if self.log { 10f64.powf(v) } else { v };
        human(x)
    }

    /// Where labels and grid lines go, in plot space: every category; 1, 2
    /// and 5 times each power of ten on a log axis; round steps otherwise.
    fn ticks(&self, lo: f64, hi: f64) -> Vec<f64> {
        let inside = |v: &f64| *v >= lo - 1e-9 && *v <= hi + 1e-9;
        if !self.categories.is_empty() {
            return (0..self.categories.len()).map(|i| i as f64).collect();
        }
        if self.log {
            let mut t = Vec::new();
            for decade in (lo.floor() as i32)..=(hi.ceil() as i32) {
                for m in [1.0f64, 2.0, 5.0] {
                    t.push(m.log10() + f64::from(decade));
                }
            }
            return t.into_iter().filter(inside).collect();
        }
        let raw = (hi - lo) / 6.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|s| *s >= raw)
            .unwrap_or(magnitude * 10.0);
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        (first..=last).map(|i| i as f64 * step).collect()
    }

    /// Plot-space range covering `values`, with a margin.
    fn range(&self, values: impl Iterator<Item = f64>) -> (f64, f64) {
        if !self.categories.is_empty() {
            return (-0.3, self.categories.len() as f64 - 0.7);
        }
        let (lo, hi) = values
            .map(|v| self.to_plot(v))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        if self.log {
            (lo.floor(), hi.ceil().max(lo.floor() + 1.0))
        } else {
            let lo = lo.min(0.0);
            let hi = if hi > lo { hi * 1.1 } else { lo + 1.0 };
            (lo, hi)
        }
    }
}

/// `12345.0` -> `12.3k`; small numbers keep a decimal or two.
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e6 {
        let m = format!("{:.2}", x / 1e6);
        format!("{}M", m.trim_end_matches('0').trim_end_matches('.'))
    } else if a >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// A linear f64 axis whose grid lines and labels sit exactly at `ticks`.
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (f64::from(limit.1 - limit.0) * t).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

/// Draws `chart` into an SVG file at `path`; a chart with no points is skipped.
pub fn draw(path: &Path, chart: &Chart) -> Result<bool, Box<dyn std::error::Error>> {
    let all: Vec<(f64, f64)> = chart
        .series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Ok(false);
    }
    let (x0, x1) = chart.x.range(all.iter().map(|p| p.0));
    let (y0, y1) = chart.y.range(all.iter().map(|p| p.1));
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ctx = ChartBuilder::on(&root)
        .caption(chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(
            Ticked {
                lo: x0,
                hi: x1,
                ticks: chart.x.ticks(x0, x1),
            },
            Ticked {
                lo: y0,
                hi: y1,
                ticks: chart.y.ticks(y0, y1),
            },
        )?;
    let (xf, yf) = (|v: &f64| chart.x.format(*v), |v: &f64| chart.y.format(*v));
    ctx.configure_mesh()
        .x_desc(chart.x.label.as_str())
        .y_desc(chart.y.label.as_str())
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for s in &chart.series {
        let colour = Palette99::pick(s.colour).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|&(x, y)| (chart.x.to_plot(x), chart.y.to_plot(y)))
            .collect();
        let style = colour.stroke_width(2);
        let legend_style = style;
        if s.dashed {
            ctx.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], legend_style));
            ctx.draw_series(pts.iter().map(|&p| Cross::new(p, 5, style)))?;
        } else {
            ctx.draw_series(LineSeries::new(pts.clone(), style))?
                .label(s.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], legend_style));
            ctx.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        }
    }
    ctx.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_numbers() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(0.25), "0.25");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(64.0), "64");
        assert_eq!(human(1500.0), "1.5k");
        assert_eq!(human(65536.0), "66k");
        assert_eq!(human(1_000_000.0), "1M");
    }

    #[test]
    fn categorical_labels() {
        let a = Axis::categories("p", &["p50", "p99"]);
        assert_eq!(a.format(0.0), "p50");
        assert_eq!(a.format(1.0), "p99");
        assert_eq!(a.format(0.5), "");
        assert_eq!(a.format(7.0), "");
    }

    #[test]
    fn log_axis_round_trips() {
        let a = Axis::log("x");
        assert_eq!(a.format(a.to_plot(1000.0)), "1.0k");
        assert_eq!(a.range([64.0, 65536.0].into_iter()), (1.0, 5.0));
        let t: Vec<String> = a.ticks(1.0, 2.0).iter().map(|&v| a.format(v)).collect();
        assert_eq!(t, ["10", "20", "50", "100"]);
        let lin = Axis::linear("y");
        assert_eq!(lin.ticks(0.0, 13.0), [0.0, 5.0, 10.0]);
    }
}
