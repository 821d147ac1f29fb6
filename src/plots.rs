//! The criteria of a time lapse drawn as one SVG of four panels: nucleus count, mean
//! nuclear volume (with its SD), total nuclear volume, and divisions per frame. SVG keeps
//! text as text, so no font files are needed and the figure edits in Inkscape/Illustrator.

use plotters::prelude::*;

use crate::criteria::FrameCriteria;
use crate::error::{Error, Result};

const SIZE: (u32, u32) = (1000, 720);

/// One panel: a series of (x, y) with optional error bars.
struct Panel<'a> {
    title: &'a str,
    y_label: &'a str,
    values: Vec<(f64, f64, f64)>,
    bars: bool,
}

fn draw_panel(area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>, x_label: &str, p: &Panel<'_>) -> std::result::Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let (x0, x1) = p.values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v.0), b.max(v.0)));
    // the spacing of the points (frames, or times between them) sets the margins and bar width
    let step = p.values.windows(2).map(|w| (w[1].0 - w[0].0).abs()).filter(|d| *d > 0.0).fold(f64::INFINITY, f64::min);
    let step = if step.is_finite() { step } else { 1.0 };
    let (x0, x1) = if x0.is_finite() { (x0 - 0.5 * step, x1 + 0.5 * step) } else { (0.0, 1.0) };
    let y1 = p.values.iter().map(|v| v.1 + v.2).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, 0.0..y1)
        .map_err(|x| e(&x))?;
    chart.configure_mesh().x_desc(x_label).y_desc(p.y_label).light_line_style(WHITE).draw().map_err(|x| e(&x))?;
    let colour = RGBColor(31, 119, 180);
    if p.bars {
        chart
            .draw_series(p.values.iter().map(|&(x, y, _)| Rectangle::new([(x - 0.35 * step, 0.0), (x + 0.35 * step, y)], colour.filled())))
            .map_err(|x| e(&x))?;
    } else {
        chart.draw_series(LineSeries::new(p.values.iter().map(|&(x, y, _)| (x, y)), colour.stroke_width(2))).map_err(|x| e(&x))?;
        chart.draw_series(p.values.iter().map(|&(x, y, _)| Circle::new((x, y), 4, colour.filled()))).map_err(|x| e(&x))?;
        chart
            .draw_series(
                p.values
                    .iter()
                    .filter(|v| v.2 > 0.0)
                    .map(|&(x, y, sd)| PathElement::new(vec![(x, (y - sd).max(0.0)), (x, y + sd)], colour.stroke_width(1))),
            )
            .map_err(|x| e(&x))?;
    }
    Ok(())
}

/// The four panels as an SVG document. The x axis is the frame, or the time when every
/// row has one (`time_unit` names it).
pub fn criteria_svg(rows: &[FrameCriteria], title: &str, time_unit: Option<&str>) -> Result<String> {
    let use_time = !rows.is_empty() && rows.iter().all(|r| r.time.is_some());
    let x = |r: &FrameCriteria| {
        if use_time {
            r.time.unwrap_or(0.0)
        } else {
            r.frame as f64
        }
    };
    let x_label = match (use_time, time_unit) {
        (true, Some(u)) => format!("time ({u})"),
        (true, None) => "time".to_string(),
        _ => "frame".to_string(),
    };
    let panels = [
        Panel { title: "Nuclei", y_label: "count", values: rows.iter().map(|r| (x(r), r.nuclei as f64, 0.0)).collect(), bars: false },
        Panel {
            title: "Mean nuclear volume (± SD)",
            y_label: "µm³",
            values: rows.iter().map(|r| (x(r), r.volume_um3_mean, r.volume_um3_sd)).collect(),
            bars: false,
        },
        Panel {
            title: "Total nuclear volume",
            y_label: "µm³",
            values: rows.iter().map(|r| (x(r), r.volume_um3_sum, 0.0)).collect(),
            bars: false,
        },
        Panel {
            title: "Divisions",
            y_label: "divisions",
            values: rows.iter().map(|r| (x(r), r.divisions as f64, 0.0)).collect(),
            bars: true,
        },
    ];
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let fail = |e: String| Error::invalid(format!("drawing the criteria plot failed: {e}"));
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let root = root.titled(title, ("sans-serif", 24)).map_err(|e| fail(e.to_string()))?;
        for (area, panel) in root.split_evenly((2, 2)).iter().zip(&panels) {
            draw_panel(area, &x_label, panel).map_err(fail)?;
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_four_panels_with_titles() {
        let row = |frame, nuclei, v| FrameCriteria {
            frame,
            time: Some(frame as f64 * 5.0),
            nuclei,
            volume_um3_sum: v * nuclei as f64,
            volume_um3_mean: v,
            volume_um3_sd: v / 10.0,
            surface_um2_sum: 0.0,
            surface_um2_mean: 0.0,
            surface_um2_sd: 0.0,
            sphericity_mean: 0.9,
            mean_intensity: 0.0,
            nearest_neighbour_um_mean: f64::NAN,
            divisions: frame % 2,
        };
        let svg = criteria_svg(&[row(0, 4, 800.0), row(1, 8, 400.0), row(2, 16, 200.0)], "emb", Some("min")).unwrap();
        assert!(svg.starts_with("<svg"));
        for t in ["Nuclei", "Mean nuclear volume", "Total nuclear volume", "Divisions", "time (min)", "emb"] {
            assert!(svg.contains(t), "{t} missing");
        }
        assert!(criteria_svg(&[], "empty", None).unwrap().contains("frame"));
    }
}
