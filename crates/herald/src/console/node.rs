//! Node and cluster: this node's id, bus and its health, connections, the leases it holds;
//! the cluster's nodes with their device connections and every lease; how fast the store
//! answers.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::apps::layout;
use super::view::{Cell, Page, Section, Table, rows, text, time_of};
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
                    if n["busConnected"] == true {
                        Cell::Text("yes".into())
                    } else {
                        Cell::Text(format!(
                            "NO, since {}: pushes are accepted; other nodes' devices get them through the store",
                            time_of(&n, "busDownSince")
                        ))
                    },
                ),
                (
                    "Cluster degraded".into(),
                    Cell::Text(
                        if n["clusterDegraded"] == true {
                            "yes: a node lost the bus or went silent on it; deliveries between nodes go through the \
                             store (cluster.degraded_resync_ms)"
                        } else {
                            "no"
                        }
                        .into(),
                    ),
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
    match console.call(&op, Method::GET, "/admin/v1/cluster", None, None).await.into_data() {
        Ok(c) => {
            page.heading("Cluster");
            let nodes = rows(&c["nodes"], |n| vec![Cell::Code(text(n, "nodeId")), Cell::Text(text(n, "connections"))]);
            page.push(Section::Table(Table {
                caption: "Device connections per node, as the store records them".into(),
                head: vec!["Node", "Device connections"],
                rows: nodes,
                empty: "No node holds a device connection.",
            }));
            let leases = rows(&c["leases"], |l| {
                vec![Cell::Text(text(l, "name")), Cell::Code(text(l, "holder")), Cell::Text(time_of(l, "expiresAt"))]
            });
            page.push(Section::Table(Table {
                caption: "Leases: the node doing each piece of work that only one node does".into(),
                head: vec!["Lease", "Holder", "Held until"],
                rows: leases,
                empty: "No lease.",
            }));
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
