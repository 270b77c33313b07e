//! Analytics: the funnel (pushed, arrived, opened, ignored) and a per-minute, hour or day
//! chart with the filters of the analytics API. The chart is SVG drawn here from numbers
//! only (no script, nothing from outside the binary).

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::form::PageQuery;
use super::view::{Cell, Field, Form, Kind, Section, Table, text, time};
use super::{Console, Operator};

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Filter {
    granularity: String,
    /// Hours back from now.
    hours: String,
    platform: String,
    channel: String,
    push_type: String,
}

/// What the chart draws, with its colour (CSS classes of `console.css`).
const LINES: [(&str, &str); 4] =
    [("pushNum", "pushed"), ("arrivalNum", "arrived"), ("openNum", "opened"), ("ignoreNum", "ignored")];

pub(crate) async fn page(
    State(console): State<Console>,
    op: Operator,
    Path(app): Path<String>,
    PageQuery(f): PageQuery<Filter>,
) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, "Analytics", "analytics", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let granularity = match f.granularity.as_str() {
        "hour" | "day" => f.granularity.as_str(),
        _ => "minute",
    };
    let step: i64 = match granularity {
        "minute" => 60_000,
        "hour" => 3_600_000,
        _ => 86_400_000,
    };
    let hours = f.hours.trim().parse::<i64>().ok().filter(|h| (1..=24 * 730).contains(h)).unwrap_or(1);
    page.push(Section::Form(Form {
        id: "analytics-filter",
        legend: "Filter".into(),
        action: format!("/console/apps/{app_id}/analytics"),
        get: true,
        fields: vec![
            Field::new(
                "granularity",
                "Per",
                Kind::Select(vec![("minute", "minute"), ("hour", "hour"), ("day", "day")]),
            )
            .value(granularity),
            Field::new("hours", "Last … hours", Kind::Number)
                .value(hours.to_string())
                .help("minute: at most 168; hour: 2160"),
            Field::new(
                "platform",
                "Platform",
                Kind::Select(vec![
                    ("", "any"),
                    ("android", "Android"),
                    ("ios", "iOS"),
                    ("harmonyos", "HarmonyOS"),
                    ("web", "web"),
                ]),
            )
            .value(f.platform.clone()),
            Field::new(
                "channel",
                "Channel",
                Kind::Select(vec![
                    ("", "any"),
                    ("own", "own (MQTT)"),
                    ("apns", "APNs"),
                    ("fcm", "FCM"),
                    ("hms", "Huawei"),
                    ("xiaomi", "Xiaomi"),
                    ("webpush", "Web Push"),
                ]),
            )
            .value(f.channel.clone()),
            Field::new(
                "pushType",
                "Push type",
                Kind::Select(vec![
                    ("", "any"),
                    ("simple", "Simple"),
                    ("template", "Template"),
                    ("multiple", "Multiple"),
                    ("broadcast", "Broadcast"),
                ]),
            )
            .value(f.push_type.clone()),
        ],
        submit: "Show",
    }));
    let now = herald_core::now_ms();
    // Whole buckets, the current one included.
    let to = (now / step + 1) * step;
    let from = (now - hours * 3_600_000) / step * step;
    let mut query = vec![("startTime", from.to_string()), ("endTime", to.to_string())];
    for (k, v) in [("platform", &f.platform), ("channel", &f.channel), ("pushType", &f.push_type)] {
        if !v.is_empty() {
            query.push((k, v.clone()));
        }
    }
    let qs = serde_urlencoded::to_string(&query).unwrap_or_default();
    match console.call(&op, Method::GET, &format!("/v1/analytics/core?{qs}"), Some(&app_id), None).await.into_data() {
        Ok(core) => {
            let n = |k: &str| Cell::Text(text(&core, k));
            page.push(Section::Facts(vec![
                ("Tasks' targets".into(), n("pushTotalNum")),
                ("Pushed".into(), n("pushNum")),
                ("Arrived".into(), n("arrivalNum")),
                ("Opened".into(), Cell::Text(format!("{} ({})", text(&core, "openNum"), text(&core, "openRate")))),
                ("Ignored".into(), Cell::Text(format!("{} ({})", text(&core, "ignoreNum"), text(&core, "ignoreRate")))),
                ("Expired".into(), n("expiredNum")),
                ("Failed".into(), n("failedNum")),
            ]));
        }
        Err(e) => page.error(e),
    }
    query.push(("granularity", granularity.to_string()));
    let qs = serde_urlencoded::to_string(&query).unwrap_or_default();
    match console.call(&op, Method::GET, &format!("/v1/analytics/series?{qs}"), Some(&app_id), None).await.into_data() {
        Ok(series) => {
            let points: Vec<(i64, [u64; 4])> = series
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| (p["time"].as_i64().unwrap_or(0), LINES.map(|(k, _)| p[k].as_u64().unwrap_or(0))))
                .collect();
            let label = format!(
                "Pushed, arrived, opened and ignored per {granularity} from {} to {}",
                time(Some(from)),
                time(Some(to))
            );
            page.push(Section::Chart { label, svg: chart(&points, from, to, step) });
            page.push(Section::Table(series_table(&series)));
        }
        Err(e) => page.error(e),
    }
    page.into_response()
}

/// The chart's numbers as a table too (for screen readers and for copying).
fn series_table(series: &Value) -> Table {
    let rows = series
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .take(60)
        .map(|p| {
            let mut row = vec![Cell::Text(time(p["time"].as_i64()))];
            row.extend(LINES.map(|(k, _)| Cell::Text(text(p, k))));
            row
        })
        .collect();
    Table {
        caption: "The newest 60 buckets with counts".into(),
        head: vec!["Bucket", "Pushed", "Arrived", "Opened", "Ignored"],
        rows,
        empty: "Nothing counted in this span.",
    }
}

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 28.0;

/// An SVG line chart of the four counts over `[from, to)` in buckets of `step` ms; buckets
/// without a point are 0.
pub(crate) fn chart(points: &[(i64, [u64; 4])], from: i64, to: i64, step: i64) -> String {
    let buckets = ((to - from) / step).max(1) as usize;
    let mut values = vec![[0u64; 4]; buckets];
    for (t, v) in points {
        if let Some(slot) = usize::try_from((t - from) / step).ok().and_then(|i| values.get_mut(i)) {
            *slot = *v;
        }
    }
    let max = values.iter().flat_map(|v| v.iter()).copied().max().unwrap_or(0).max(1);
    let (plot_w, plot_h) = (W - LEFT - 8.0, H - BOTTOM - 24.0);
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / buckets as f64;
    let y = |v: u64| 24.0 + plot_h - plot_h * v as f64 / max as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" class=\"series\" data-max=\"{max}\">"
    );
    for tick in 0..=4u64 {
        let v = max * tick / 4;
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            W - 8.0,
            LEFT - 4.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (i, label) in [(0, from), (buckets - 1, to - step)] {
        let stamp =
            jiff::Timestamp::from_millisecond(label).map(|t| t.strftime("%m-%d %H:%M").to_string()).unwrap_or_default();
        let anchor = if i == 0 { "start" } else { "end" };
        let _ = write!(svg, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{stamp} UTC</text>", x(i), H - 8.0);
    }
    for (n, (_, class)) in LINES.iter().enumerate() {
        let path: Vec<String> = values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v[n]))).collect();
        let _ = write!(svg, "<polyline class=\"{class}\" fill=\"none\" points=\"{}\"/>", path.join(" "));
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{}\" y=\"6\" width=\"10\" height=\"10\"/><text x=\"{}\" y=\"15\">{class}</text>",
            LEFT + n as f64 * 110.0,
            LEFT + n as f64 * 110.0 + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_places_each_count_in_its_bucket() {
        let svg = chart(&[(120_000, [4, 2, 1, 0])], 0, 300_000, 60_000);
        assert!(svg.contains("data-max=\"4\""), "{svg}");
        // Five buckets; the third holds the counts: pushed reaches the top there.
        let pushed = svg.split("<polyline class=\"pushed\"").nth(1).unwrap();
        let points: Vec<&str> = pushed.split('"').nth(3).unwrap().split(' ').collect();
        assert_eq!(points.len(), 5);
        assert!(points[2].ends_with(",24.0"), "{points:?}");
        assert!(points[0].ends_with(&format!(",{:.1}", 24.0 + (H - BOTTOM - 24.0))), "{points:?}");
        // A point outside the span is left out rather than drawn at an edge.
        assert!(chart(&[(900_000, [9, 9, 9, 9])], 0, 300_000, 60_000).contains("data-max=\"1\""));
    }
}
