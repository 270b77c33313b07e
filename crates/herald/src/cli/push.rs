//! `herald push simple|template|broadcast`: builds the push request from flags, signs it with
//! an API key (HMAC) and sends it to a running node's server API; prints the answer.

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::http_client;

#[derive(Subcommand)]
pub enum PushCommand {
    /// One message to up to 10 devices or users.
    Simple {
        #[arg(long)]
        title: String,
        #[arg(long)]
        content: String,
        /// Click target, delivered as is.
        #[arg(long)]
        uri: Option<String>,
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        common: Common,
    },
    /// A template's text, filled with --var, to up to 10 devices or users.
    Template {
        #[arg(long)]
        template: String,
        /// A placeholder's value: NAME=VALUE (repeat for each).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        #[command(flatten)]
        targets: Targets,
        #[command(flatten)]
        common: Common,
    },
    /// A template's text to every device of a platform.
    Broadcast {
        #[arg(long)]
        template: String,
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// The broadcast's key (a repeat within its validity is a duplicate).
        #[arg(long)]
        msgkey: String,
        #[arg(long, value_enum, default_value_t = Platform::Android)]
        platform: Platform,
        /// Which devices: with a bound user, all, or without one.
        #[arg(long, value_enum, default_value_t = Audience::Bound)]
        audience: Audience,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args)]
pub struct Targets {
    /// A device (or with --users a user) and, after `=`, its message key; without one the
    /// key is `cli-<time>`. Repeat for each target.
    #[arg(long = "to", value_name = "TARGET[=MSGKEY]", required = true)]
    to: Vec<String>,
    /// The targets are user ids.
    #[arg(long)]
    users: bool,
    /// The devices' platform (deliveryType).
    #[arg(long, value_enum, default_value_t = Platform::Android)]
    platform: Platform,
}

#[derive(Args)]
pub struct Common {
    /// Validity in seconds (1 to 259200).
    #[arg(long, default_value_t = 3600)]
    expire: u32,
    /// An extended parameter delivered with the message: NAME=VALUE (repeat for each).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    #[arg(long)]
    task_name: Option<String>,
    /// Base URL of the node's HTTP API.
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[arg(long, env = "HERALD_KEY_ID")]
    key_id: String,
    #[arg(long, env = "HERALD_API_SECRET", hide_env_values = true)]
    secret: String,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Platform {
    Android,
    Ios,
    Harmonyos,
}

impl Platform {
    fn delivery_type(self) -> i64 {
        match self {
            Platform::Android => 1,
            Platform::Ios => 2,
            Platform::Harmonyos => 7,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Audience {
    Bound,
    All,
    Unbound,
}

pub async fn run(command: PushCommand) -> anyhow::Result<()> {
    let (path, body, common) = match command {
        PushCommand::Simple { title, content, uri, targets, common } => {
            let mut body = targets.body()?;
            body.insert("title".into(), json!(title));
            body.insert("content".into(), json!(content));
            if let Some(uri) = uri {
                body.insert("uri".into(), json!(uri));
            }
            ("/v1/push/simple", body, common)
        }
        PushCommand::Template { template, vars, targets, common } => {
            let mut body = targets.body()?;
            body.insert("templateName".into(), json!(template));
            body.insert("templateKeyValue".into(), Value::Object(pairs("--var", &vars)?));
            ("/v1/push/template", body, common)
        }
        PushCommand::Broadcast { template, vars, msgkey, platform, audience, common } => {
            let push_status = match audience {
                Audience::Bound => 0,
                Audience::All => 1,
                Audience::Unbound => 2,
            };
            let body = json!({
                "deliveryType": platform.delivery_type(), "templateName": template,
                "templateKeyValue": Value::Object(pairs("--var", &vars)?), "msgkey": msgkey, "pushStatus": push_status,
            });
            let Value::Object(body) = body else { unreachable!("a JSON object") };
            ("/v1/push/broadcast", body, common)
        }
    };
    send(path, body, common).await
}

impl Targets {
    /// `deliveryType` and `targetMsgkey`.
    fn body(&self) -> anyhow::Result<Map<String, Value>> {
        let default_key = format!("cli-{}", herald_core::now_ms());
        let mut targets = Map::new();
        for t in &self.to {
            let (target, key) = t.split_once('=').unwrap_or((t, &default_key));
            anyhow::ensure!(!target.is_empty() && !key.is_empty(), "--to {t}: expected TARGET or TARGET=MSGKEY");
            targets.insert(target.to_string(), json!(key));
        }
        let delivery_type = if self.users { 3 } else { self.platform.delivery_type() };
        let mut body = Map::new();
        body.insert("deliveryType".into(), json!(delivery_type));
        body.insert("targetMsgkey".into(), Value::Object(targets));
        Ok(body)
    }
}

/// `NAME=VALUE` arguments as a JSON object of strings.
fn pairs(flag: &str, args: &[String]) -> anyhow::Result<Map<String, Value>> {
    args.iter()
        .map(|a| {
            let (k, v) = a.split_once('=').with_context(|| format!("{flag} {a}: expected NAME=VALUE"))?;
            Ok((k.to_string(), json!(v)))
        })
        .collect()
}

/// Adds the common fields, signs and sends; prints the answer, fails unless it is 200 OK.
async fn send(path: &str, mut body: Map<String, Value>, common: Common) -> anyhow::Result<()> {
    body.insert("expiredSeconds".into(), json!(common.expire));
    if !common.params.is_empty() {
        body.insert("extendedParams".into(), Value::Object(pairs("--param", &common.params)?));
    }
    if let Some(name) = common.task_name {
        body.insert("taskName".into(), json!(name));
    }
    let body = Value::Object(body).to_string();
    let addr = http_client::authority(&common.server)?;
    let headers = herald_core::signing::sign_hmac(
        &common.key_id,
        &common.secret,
        "POST",
        path,
        body.as_bytes(),
        herald_core::now_ms(),
    );
    let headers: Vec<(String, String)> =
        headers.into_iter().chain([("content-type".to_string(), "application/json".to_string())]).collect();
    let response = http_client::request(&addr, "POST", path, &headers, Bytes::from(body))
        .await
        .with_context(|| format!("calling {}{path}", common.server))?;
    let answer = response.json();
    println!("{}", serde_json::to_string_pretty(&answer)?);
    if response.status != 200 || answer["resultCode"] != "OK" {
        anyhow::bail!("the server refused the push ({})", response.status);
    }
    Ok(())
}
