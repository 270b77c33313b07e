//! Node and cluster: this node's id, bus and its health, connections, the leases it holds,
//! and how fast the store answers.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::apps::layout;
use super::view::{Cell, Page, Section, text};
use super::{Console, Operator};

pub(crate) async fn page(State(console): State<Console>, op: Operator) -> Response {
    let mut page = Page::new(layout(&op, "Node and cluster", None, "node"));
    match console.call(&op, Method::GET, "/admin/v1/node", None, None).await.into_data() {
        Ok(n) => {
            let leases: Vec<String> =
                n["leases"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(str::to_string)).collect();
            page.push(Section::Facts(vec![
                ("Node".into(), Cell::Code(text(&n, "nodeId"))),
                ("Bus".into(), Cell::Text(text(&n, "bus"))),
                (
                    "Bus connected".into(),
                    Cell::Text(if n["busConnected"] == true { "yes" } else { "NO: pushes are refused (503)" }.into()),
                ),
                ("Device connections on this node".into(), Cell::Text(text(&n, "connections"))),
                (
                    "Leases held (work only one node does)".into(),
                    Cell::Text(if leases.is_empty() { "none".into() } else { leases.join(", ") }),
                ),
            ]));
        }
        Err(e) => page.error(e),
    }
    // One read of the store, timed: what every request here waits for at least.
    let started = std::time::Instant::now();
    let store = match console.state().store.setting("console-health-probe").await {
        Ok(_) => format!("answers; one read took {:.1} ms", started.elapsed().as_secs_f64() * 1000.0),
        Err(e) => format!("FAILS: {e}"),
    };
    page.push(Section::Facts(vec![
        ("Store".into(), Cell::Text(store)),
        ("Prometheus metrics".into(), Cell::Link { text: "/metrics".into(), href: "/metrics".into() }),
        ("API description".into(), Cell::Link { text: "/openapi.json".into(), href: "/openapi.json".into() }),
    ]));
    page.into_response()
}
