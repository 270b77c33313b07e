//! A device on the command line: registers once (its identity kept in a file), stays
//! connected, and prints each push as one JSON line; `opened` is reported for each.
//!
//! ```sh
//! cargo run -p herald-client --example device -- \
//!     --http http://127.0.0.1:8080 --mqtt tcp://127.0.0.1:1884 --app <appId> --app-key <appKey>
//! ```
//!
//! Options: `--install-id` (default `example-device`), `--store` (default
//! `herald-device.json`), `--platform` (default `android`), `--ca <PEM file>` (a private CA
//! for `https://`, `tls://`, `wss://`), `--count N` (stop after N notifications).

use std::sync::Arc;

use herald_client::{Client, Config, Event, FileStore, Outcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let need = |name: &str| arg(name).ok_or_else(|| format!("{name} is required (see the example's header)"));
    let mut config = Config::new(
        &need("--http")?,
        &need("--mqtt")?,
        &need("--app")?,
        &need("--app-key")?,
        &arg("--platform").unwrap_or_else(|| "android".into()),
    );
    if let Some(ca) = arg("--ca") {
        let pem = std::fs::read(&ca)?;
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
            config.extra_roots.push(cert?);
        }
    }
    let install_id = arg("--install-id").unwrap_or_else(|| "example-device".into());
    let mut left: Option<u64> = arg("--count").map(|n| n.parse()).transpose()?;
    let store = Arc::new(FileStore::open(arg("--store").unwrap_or_else(|| "herald-device.json".into()))?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let (client, mut events) = Client::start(config, &install_id, store).await?;
        eprintln!("deviceId {}", client.device_id());
        while let Some(event) = events.recv().await {
            match event {
                Event::State(state) => eprintln!("state: {state:?}"),
                Event::Notification(n) => {
                    println!("{}", n.payload);
                    if let Err(e) = client.event(&n.message_id, Outcome::Opened).await {
                        eprintln!("opened not reported: {e}");
                    }
                    left = left.map(|n| n.saturating_sub(1));
                    if left == Some(0) {
                        break;
                    }
                }
                Event::Revoke { message_id, .. } => println!("{{\"revoked\": \"{message_id}\"}}"),
            }
        }
        client.stop().await;
        Ok(())
    })
}
