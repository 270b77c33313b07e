//! `herald channel …`: an app's vendor channels through the admin API
//! (`/admin/v1/apps/{appId}/channels/{kind}`), with keys and certificates read from files so
//! that they never pass through a shell's history. Secrets given as values can come from
//! environment variables instead of flags (hidden from `--help` and process listings).

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminArgs, admin_call};

#[derive(Subcommand)]
pub(super) enum ChannelCommand {
    /// Set (or replace) a channel; prints the channel as the server shows it (secrets masked).
    Set {
        #[command(subcommand)]
        kind: SetKind,
    },
    /// Show a channel: settings, masked secrets, health and certificate expiry.
    Get {
        #[arg(long)]
        app: String,
        /// apns, fcm, hms, xiaomi or webpush.
        kind: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Remove a channel: its messages go through the own channel only.
    Delete {
        #[arg(long)]
        app: String,
        /// apns, fcm, hms, xiaomi or webpush.
        kind: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// The app whose channel is set, and the node to ask.
#[derive(clap::Args)]
pub(super) struct Target {
    #[arg(long)]
    app: String,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand)]
pub(super) enum SetKind {
    /// APNs with a `.p8` signing key (token auth) or a `.p12` certificate.
    Apns {
        /// The app's bundle id: the `apns-topic`.
        #[arg(long)]
        bundle_id: String,
        /// "production" or "sandbox".
        #[arg(long, default_value = "production")]
        environment: String,
        /// The `.p8` key file (token auth; with --key-id and --team-id).
        #[arg(long, conflicts_with = "p12", requires_all = ["key_id", "team_id"])]
        p8: Option<PathBuf>,
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        team_id: Option<String>,
        /// The `.p12` certificate file (certificate auth).
        #[arg(long, required_unless_present = "p8")]
        p12: Option<PathBuf>,
        /// The `.p12`'s password.
        #[arg(long, env = "HERALD_APNS_P12_PASSWORD", hide_env_values = true, default_value = "")]
        password: String,
        #[command(flatten)]
        to: Target,
    },
    /// FCM HTTP v1 with a service-account JSON file.
    Fcm {
        #[arg(long)]
        service_account: PathBuf,
        #[command(flatten)]
        to: Target,
    },
    /// Huawei Push Kit with the app's id and client secret.
    Hms {
        #[arg(long)]
        app_id: String,
        #[arg(long, env = "HERALD_HMS_CLIENT_SECRET", hide_env_values = true)]
        client_secret: String,
        /// The receipt callback's user name, as set in AppGallery Connect (with the key).
        #[arg(long, requires = "callback_key")]
        callback_user_name: Option<String>,
        /// The receipt callback's key (signs X-HUAWEI-CALLBACK-ID).
        #[arg(long, env = "HERALD_HMS_CALLBACK_KEY", hide_env_values = true, requires = "callback_user_name")]
        callback_key: Option<String>,
        #[command(flatten)]
        to: Target,
    },
    /// Xiaomi push with the app secret and package name.
    Xiaomi {
        #[arg(long, env = "HERALD_XIAOMI_APP_SECRET", hide_env_values = true)]
        app_secret: String,
        #[arg(long)]
        package_name: String,
        #[command(flatten)]
        to: Target,
    },
    /// Web Push: Herald generates the VAPID key pair (kept across later sets unless rotated).
    Webpush {
        /// The contact push services may reach: mailto: or https://.
        #[arg(long)]
        subject: String,
        /// A new key pair: every browser must subscribe again.
        #[arg(long)]
        rotate_key: bool,
        #[command(flatten)]
        to: Target,
    },
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The `PUT` body of a `set`, with its kind and the admin connection.
fn body(kind: SetKind) -> anyhow::Result<(&'static str, Value, Target)> {
    Ok(match kind {
        SetKind::Apns { bundle_id, environment, p8, key_id, team_id, p12, password, to } => {
            let body = match (p8, p12) {
                (Some(p8), _) => json!({"authType": "token", "bundleId": bundle_id, "environment": environment,
                    "keyId": key_id, "teamId": team_id, "privateKey": read_text(&p8)?}),
                (None, Some(p12)) => {
                    let der = std::fs::read(&p12).with_context(|| format!("reading {}", p12.display()))?;
                    json!({"authType": "certificate", "bundleId": bundle_id, "environment": environment,
                        "certificate": base64::engine::general_purpose::STANDARD.encode(der), "password": password})
                }
                (None, None) => anyhow::bail!("give --p8 (with --key-id and --team-id) or --p12"),
            };
            ("apns", body, to)
        }
        SetKind::Fcm { service_account, to } => {
            let text = read_text(&service_account)?;
            let account: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a service-account JSON file", service_account.display()))?;
            ("fcm", json!({"serviceAccount": account}), to)
        }
        SetKind::Hms { app_id, client_secret, callback_user_name, callback_key, to } => {
            let mut body = json!({"appId": app_id, "clientSecret": client_secret});
            if let (Some(user), Some(key)) = (callback_user_name, callback_key) {
                body["callbackUserName"] = user.into();
                body["callbackKey"] = key.into();
            }
            ("hms", body, to)
        }
        SetKind::Xiaomi { app_secret, package_name, to } => {
            ("xiaomi", json!({"appSecret": app_secret, "packageName": package_name}), to)
        }
        SetKind::Webpush { subject, rotate_key, to } => {
            ("webpush", json!({"subject": subject, "rotateKey": rotate_key}), to)
        }
    })
}

pub(super) async fn run(command: ChannelCommand) -> anyhow::Result<()> {
    match command {
        ChannelCommand::Set { kind } => {
            let (kind, body, to) = body(kind)?;
            admin_call(&to.admin, "PUT", &format!("/admin/v1/apps/{}/channels/{kind}", to.app), body).await
        }
        ChannelCommand::Get { app, kind, admin } => {
            admin_call(&admin, "GET", &format!("/admin/v1/apps/{app}/channels/{kind}"), Value::Null).await
        }
        ChannelCommand::Delete { app, kind, admin } => {
            admin_call(&admin, "DELETE", &format!("/admin/v1/apps/{app}/channels/{kind}"), Value::Null).await
        }
    }
}
