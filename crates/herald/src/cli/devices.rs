//! `herald devices import`: devices exported from another push provider (CSV or JSON) sent to
//! a running node's admin API in batches, with a progress bar and a summary of what was
//! refused and why.
//!
//! JSON: an array of `{installId, platform, appVersion, osVersion, model, vendorTokens,
//! userId}` (or `{"devices": [...]}`). CSV: a header row naming the columns `installId`,
//! `platform`, `appVersion`, `osVersion`, `model`, `userId` and one column per vendor token
//! (`apns`, `fcm`, `hms`, `xiaomi`, `webpush`); an empty cell is no value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::AdminArgs;
use crate::http_client;

/// Devices per call (the server takes at most 500).
const BATCH: usize = 200;
const FIELDS: [&str; 6] = ["installId", "platform", "appVersion", "osVersion", "model", "userId"];
const TOKENS: [&str; 5] = ["apns", "fcm", "hms", "xiaomi", "webpush"];
/// Refusals shown per reason in the summary.
const EXAMPLES: usize = 5;

/// The refusals of one reason code: how many, and the first few as (device number in the
/// file, from 1; installId; reason).
type Refused = (u64, Vec<(usize, String, String)>);

#[derive(Subcommand)]
pub enum DevicesCommand {
    /// Import devices with their vendor tokens (and users) from a CSV or JSON export.
    Import {
        #[arg(long)]
        app: String,
        /// The export: `.csv`, or JSON (`.json` or anything else).
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub async fn run(command: DevicesCommand) -> anyhow::Result<()> {
    let DevicesCommand::Import { app, file, admin } = command;
    let devices = read(&file)?;
    anyhow::ensure!(!devices.is_empty(), "{} holds no device", file.display());
    let addr = http_client::authority(&admin.server)?;
    let headers = vec![
        ("authorization".to_string(), format!("Bearer {}", admin.admin_token)),
        ("content-type".to_string(), "application/json".to_string()),
    ];
    let path = format!("/admin/v1/apps/{app}/devices/import");
    let bar = indicatif::ProgressBar::new(devices.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices ({eta} left)")
            .context("progress bar template")?,
    );
    let (mut imported, mut updated) = (0u64, 0u64);
    let mut refused: BTreeMap<String, Refused> = BTreeMap::new();
    for (batch, chunk) in devices.chunks(BATCH).enumerate() {
        let body = Bytes::from(json!({"devices": chunk}).to_string());
        let response = http_client::request(&addr, "POST", &path, &headers, body)
            .await
            .with_context(|| format!("calling {}{path}", admin.server))?;
        let answer = response.json();
        if response.status != 200 {
            bar.abandon();
            println!("{}", serde_json::to_string_pretty(&answer)?);
            anyhow::bail!(
                "the server refused devices {} to {} ({}); the ones before were imported",
                batch * BATCH + 1,
                batch * BATCH + chunk.len(),
                response.status
            );
        }
        imported += answer["imported"].as_u64().unwrap_or(0);
        updated += answer["updated"].as_u64().unwrap_or(0);
        for r in answer["refused"].as_array().into_iter().flatten() {
            let code = r["code"].as_str().unwrap_or("?").to_string();
            let entry = refused.entry(code).or_default();
            entry.0 += 1;
            if entry.1.len() < EXAMPLES {
                let number = batch * BATCH + r["index"].as_u64().unwrap_or(0) as usize + 1;
                let install = r["installId"].as_str().unwrap_or("").to_string();
                entry.1.push((number, install, r["reason"].as_str().unwrap_or("").to_string()));
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish();
    let total_refused: u64 = refused.values().map(|(n, _)| n).sum();
    println!("{} devices: {imported} imported, {updated} updated, {total_refused} refused", devices.len());
    for (code, (n, examples)) in &refused {
        println!("  {code}: {n}");
        for (number, install, reason) in examples {
            println!("    device {number} (installId {install:?}): {reason}");
        }
    }
    Ok(())
}

/// The devices of the export, as the import API takes them.
fn read(file: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv")) {
        return from_csv(&text).with_context(|| format!("reading {} as CSV", file.display()));
    }
    let json: Value = serde_json::from_str(&text).with_context(|| format!("reading {} as JSON", file.display()))?;
    match json {
        Value::Array(devices) => Ok(devices),
        Value::Object(mut o) if o.get("devices").is_some_and(Value::is_array) => match o.remove("devices") {
            Some(Value::Array(devices)) => Ok(devices),
            _ => unreachable!("checked to be an array"),
        },
        _ => anyhow::bail!("{}: expected an array of devices, or {{\"devices\": [...]}}", file.display()),
    }
}

fn from_csv(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_string()).collect();
    for h in &header {
        anyhow::ensure!(
            FIELDS.contains(&h.as_str()) || TOKENS.contains(&h.as_str()),
            "unknown column {h:?} (columns: {}, {})",
            FIELDS.join(", "),
            TOKENS.join(", ")
        );
    }
    let mut devices = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}", line + 2))?;
        let mut device = Map::new();
        let mut tokens = Map::new();
        for (name, value) in header.iter().zip(record.iter()) {
            if value.is_empty() {
                continue;
            }
            if TOKENS.contains(&name.as_str()) {
                tokens.insert(name.clone(), json!(value));
            } else {
                device.insert(name.clone(), json!(value));
            }
        }
        if !tokens.is_empty() {
            device.insert("vendorTokens".into(), Value::Object(tokens));
        }
        devices.push(Value::Object(device));
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_devices_with_their_tokens() {
        let devices =
            from_csv("installId,platform,fcm,apns,userId\ni1,android,tok-1,,alice\n\"i,2\",ios,,tok-2,\n").unwrap();
        assert_eq!(
            devices,
            vec![
                json!({"installId": "i1", "platform": "android", "userId": "alice", "vendorTokens": {"fcm": "tok-1"}}),
                json!({"installId": "i,2", "platform": "ios", "vendorTokens": {"apns": "tok-2"}}),
            ]
        );
        let unknown = from_csv("installId,platform,pushy\ni,android,x\n").unwrap_err();
        assert!(unknown.to_string().contains("unknown column \"pushy\""), "{unknown}");
    }
}
