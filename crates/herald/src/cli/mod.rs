//! The `herald` command: `serve`, `config default`, `app`, `key`, `channel`, `receipts`,
//! `devices`, `push`, `sign`. (The load
//! generator is its own binary, `herald-bench`.)

use std::path::PathBuf;
use std::process::ExitCode;

mod channel;
mod devices;
mod push;

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use crate::config::{Config, DEFAULT_CONFIG};
use crate::http_client;

#[derive(Parser)]
#[command(name = "herald", version, about = "Self-hosted mobile push service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node: HTTP API and MQTT gateway.
    Serve(ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage apps through the admin API of a running node.
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
    /// Manage API keys through the admin API of a running node.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Configure an app's vendor channels (APNs, FCM, Huawei, Xiaomi, Web Push) through the
    /// admin API of a running node, reading key files from disk.
    Channel {
        #[command(subcommand)]
        command: channel::ChannelCommand,
    },
    /// Set or show an app's receipt webhook through the admin API of a running node.
    Receipts {
        #[command(subcommand)]
        command: ReceiptsCommand,
    },
    /// Import devices (with vendor tokens) from another provider's export through the admin
    /// API of a running node.
    Devices {
        #[command(subcommand)]
        command: devices::DevicesCommand,
    },
    /// Send a push through the server API of a running node, signed with an API key
    /// (HERALD_KEY_ID, HERALD_API_SECRET).
    Push {
        #[command(subcommand)]
        command: push::PushCommand,
    },
    /// Print the signature headers of a server-API request as curl arguments.
    Sign(SignArgs),
    /// Print the OpenAPI description of the HTTP APIs (what `/openapi.json` serves).
    Openapi,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML); see `herald config default`.
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "HERALD_HTTP_ADDR")]
    http_addr: Option<std::net::SocketAddr>,
    #[arg(long, env = "HERALD_MQTT_ADDR")]
    mqtt_addr: Option<std::net::SocketAddr>,
    /// PEM certificate chain; with --tls-key, turns on the TLS listeners.
    #[arg(long, env = "HERALD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long, env = "HERALD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    #[arg(long, env = "HERALD_MQTTS_ADDR")]
    mqtts_addr: Option<std::net::SocketAddr>,
    #[arg(long, env = "HERALD_HTTPS_ADDR")]
    https_addr: Option<std::net::SocketAddr>,
    #[arg(long, env = "HERALD_STORE_URL")]
    store_url: Option<String>,
    #[arg(long, env = "HERALD_BUS_URL")]
    bus_url: Option<String>,
    #[arg(long, env = "HERALD_NODE_ID")]
    node_id: Option<String>,
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[arg(long, env = "HERALD_MASTER_KEY", hide_env_values = true)]
    master_key: Option<String>,
    /// "text" or "json".
    #[arg(long, env = "HERALD_LOG_FORMAT")]
    log_format: Option<String>,
    #[arg(long, env = "HERALD_LOG_LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the commented default configuration file.
    Default,
}

#[derive(Args)]
struct AdminArgs {
    /// Base URL of the node's HTTP API.
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
}

#[derive(Subcommand)]
enum AppCommand {
    /// Create an app; prints its ids and secrets (shown once) as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// Let devices bind users without a proof from the app's server (MPS behaviour).
        #[arg(long)]
        trust_client_bind: bool,
        /// The MPS workspace the app answers for (the MPS endpoint's `WorkspaceId`).
        #[arg(long)]
        workspace_id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List apps.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one app with its API keys (never a secret).
    Show {
        #[arg(long)]
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add an API key: HMAC (secret printed once) or RSA (with the app's public key).
    Create {
        #[arg(long)]
        app: String,
        /// PEM file of an RSA public key; without it an HMAC key is created.
        #[arg(long)]
        rsa_public_key: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List an app's API keys: id, type, created, revoked (never a secret).
    List {
        #[arg(long)]
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke an API key.
    Revoke {
        #[arg(long)]
        app: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Args)]
struct SignArgs {
    #[arg(long, env = "HERALD_KEY_ID")]
    key_id: String,
    #[arg(long, env = "HERALD_API_SECRET", hide_env_values = true)]
    secret: String,
    /// HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// Path and query, e.g. /v1/push/simple.
    path: String,
    /// File holding the exact body to send ("-" for standard input); empty when absent.
    #[arg(long)]
    body: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Config { command: ConfigCommand::Default } => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::Sign(args) => report(sign(args)),
        Command::Openapi => match crate::api::description().to_pretty_json() {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => report(Err(e.into())),
        },
        Command::App { command } => report(runtime().and_then(|rt| rt.block_on(app(command)))),
        Command::Key { command } => report(runtime().and_then(|rt| rt.block_on(key(command)))),
        Command::Channel { command } => report(runtime().and_then(|rt| rt.block_on(channel::run(command)))),
        Command::Receipts { command } => report(runtime().and_then(|rt| rt.block_on(receipts(command)))),
        Command::Devices { command } => report(runtime().and_then(|rt| rt.block_on(devices::run(command)))),
        Command::Push { command } => report(runtime().and_then(|rt| rt.block_on(push::run(command)))),
    }
}

#[derive(Subcommand)]
enum ReceiptsCommand {
    /// Set the webhook (the first set needs --url); prints it, with the signing secret when
    /// it is created or rotated (shown only then).
    Set {
        #[arg(long)]
        app: String,
        /// Where receipts are POSTed: an http:// or https:// URL.
        #[arg(long)]
        url: Option<String>,
        /// Stop sending (receipts are no longer queued); --enable starts again.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        #[arg(long)]
        enable: bool,
        /// A new signing secret (the old one stops verifying at once).
        #[arg(long)]
        rotate_secret: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show the webhook (secret masked), the receipts waiting and its health.
    Get {
        #[arg(long)]
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

async fn receipts(command: ReceiptsCommand) -> anyhow::Result<()> {
    match command {
        ReceiptsCommand::Set { app, url, disable, enable, rotate_secret, admin } => {
            let mut body = serde_json::json!({"rotateSecret": rotate_secret});
            if let Some(url) = url {
                body["url"] = url.into();
            }
            if disable || enable {
                body["enabled"] = enable.into();
            }
            admin_call(&admin, "PUT", &format!("/admin/v1/apps/{app}/receipts"), body).await
        }
        ReceiptsCommand::Get { app, admin } => {
            admin_call(&admin, "GET", &format!("/admin/v1/apps/{app}/receipts"), serde_json::Value::Null).await
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// File < environment < flags.
fn load_config(args: ServeArgs) -> Result<Config, Vec<String>> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{}: {e}", path.display())])?;
            Config::from_toml(&text).map_err(|e| vec![format!("{}: {e}", path.display())])?
        }
        None => Config::default(),
    };
    macro_rules! set {
        ($($field:ident).+ = $value:expr) => {
            if let Some(v) = $value {
                cfg.$($field).+ = v;
            }
        };
    }
    set!(data_dir = args.data_dir);
    set!(http_addr = args.http_addr);
    set!(mqtt_addr = args.mqtt_addr);
    set!(tls.mqtts_addr = args.mqtts_addr);
    set!(tls.https_addr = args.https_addr);
    if args.tls_cert.is_some() {
        cfg.tls.cert = args.tls_cert;
    }
    if args.tls_key.is_some() {
        cfg.tls.key = args.tls_key;
    }
    set!(node_id = args.node_id);
    set!(log.format = args.log_format);
    set!(log.level = args.log_level);
    if args.store_url.is_some() {
        cfg.store_url = args.store_url;
    }
    if args.bus_url.is_some() {
        cfg.bus_url = args.bus_url;
    }
    if args.admin_token.is_some() {
        cfg.admin_token = args.admin_token;
    }
    if args.master_key.is_some() {
        cfg.master_key = args.master_key;
    }
    let problems = cfg.validate();
    if problems.is_empty() { Ok(cfg) } else { Err(problems) }
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let cfg = match load_config(args) {
        Ok(cfg) => cfg,
        Err(problems) => {
            eprintln!("invalid configuration:");
            for p in problems {
                eprintln!("  - {p}");
            }
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg);
    raise_fd_limit();
    let result = runtime().and_then(|rt| {
        rt.block_on(async move {
            let listeners = crate::node::Listeners::bind(&cfg).await?;
            let (trigger, signal) = crate::shutdown::channel();
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                trigger.fire();
            });
            crate::node::run(cfg, listeners, signal).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "herald stopped with an error");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Every device connection is a file descriptor: raise the soft limit to the hard one.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            let soft = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            soft == limit.rlim_max || libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        tracing::debug!(open_files = limit.rlim_cur, "file descriptor limit");
    } else {
        tracing::warn!("could not raise the open-file limit; connections are capped by the soft limit");
    }
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn admin_call(admin: &AdminArgs, method: &str, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let addr = http_client::authority(&admin.server)?;
    let headers = vec![("authorization".to_string(), format!("Bearer {}", admin.admin_token))];
    let body = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
    let response = http_client::request(&addr, method, path, &headers, body)
        .await
        .with_context(|| format!("calling {}{path}", admin.server))?;
    let json = response.json();
    println!("{}", serde_json::to_string_pretty(&json)?);
    if response.status >= 400 {
        anyhow::bail!("the server answered {}", response.status);
    }
    Ok(())
}

async fn app(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Create { name, trust_client_bind, workspace_id, admin } => {
            let body = json!({"name": name, "trustClientBind": trust_client_bind, "workspaceId": workspace_id});
            admin_call(&admin, "POST", "/admin/v1/apps", body).await
        }
        AppCommand::List { admin } => admin_call(&admin, "GET", "/admin/v1/apps", serde_json::Value::Null).await,
        AppCommand::Show { app, admin } => {
            admin_call(&admin, "GET", &format!("/admin/v1/apps/{app}"), serde_json::Value::Null).await
        }
    }
}

async fn key(command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { app, rsa_public_key, admin } => {
            let body = match rsa_public_key {
                Some(path) => {
                    let pem = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    json!({"type": "rsa", "publicKey": pem})
                }
                None => json!({"type": "hmac"}),
            };
            admin_call(&admin, "POST", &format!("/admin/v1/apps/{app}/keys"), body).await
        }
        KeyCommand::List { app, admin } => {
            admin_call(&admin, "GET", &format!("/admin/v1/apps/{app}/keys"), serde_json::Value::Null).await
        }
        KeyCommand::Revoke { app, key, admin } => {
            admin_call(&admin, "DELETE", &format!("/admin/v1/apps/{app}/keys/{key}"), serde_json::Value::Null).await
        }
    }
}

fn sign(args: SignArgs) -> anyhow::Result<()> {
    let body = match args.body {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
        Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    };
    let headers = herald_core::signing::sign_hmac(
        &args.key_id,
        &args.secret,
        &args.method,
        &args.path,
        &body,
        herald_core::now_ms(),
    );
    let args: Vec<String> = headers.iter().map(|(k, v)| format!("-H {k}:{v}")).collect();
    println!("{}", args.join(" "));
    Ok(())
}
