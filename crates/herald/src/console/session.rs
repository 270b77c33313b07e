//! Sign-in with the admin token, the session cookie and the CSRF tokens.
//!
//! A session is a random token in the cookie `herald_console` (HttpOnly, SameSite=Strict,
//! Path=/console, Secure over HTTPS); the store keeps only its SHA-256, so every node of a
//! cluster knows it and a copy of the store reveals none. Its CSRF token is the SHA-256 of
//! `"csrf\n" + token`: a page carries it in each form, and a forged form from another site
//! has neither. The sign-in form itself carries a token tied to a short-lived cookie of its
//! own (double submit), so no other site can sign a browser in. Sign-out ends the session in
//! the store: the cookie is worthless after it, on every node. The store knows a session by the
//! hash of its token together with the admin token's hash: a new admin token ends them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use askama::Template;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use herald_core::crypto;
use herald_core::model::ConsoleSession;
use herald_core::untrusted::Untrusted;

use super::Console;
use super::form::Fields;
use super::view::page_response;
use crate::http::Peer;
use crate::rate::{Bucket, source};

const COOKIE: &str = "herald_console";
/// The sign-in form's own cookie (double-submit CSRF token), valid for 10 minutes.
const SIGNIN_COOKIE: &str = "herald_console_signin";
/// The longest name an operator may give at sign-in.
const MAX_WHO: usize = 64;

/// Sign-in attempts per source address: a burst of 10, then one every 6 seconds, so that
/// the admin token cannot be guessed at the speed of the network.
const SIGNIN_BURST: f64 = 10.0;
const SIGNIN_RATE: f64 = 1.0 / 6.0;
/// Addresses remembered at most; beyond, the ones whose buckets are full again are dropped.
const SIGNIN_ADDRESSES: usize = 10_000;

/// Sign-in attempts by source address (this node's count).
#[derive(Default)]
pub(crate) struct SigninLimit(parking_lot::Mutex<HashMap<IpAddr, Bucket>>);

impl SigninLimit {
    /// `Err` with how long the address waits.
    fn attempt(&self, ip: IpAddr, now: Instant) -> Result<(), std::time::Duration> {
        let mut buckets = self.0.lock();
        if buckets.len() >= SIGNIN_ADDRESSES {
            buckets.retain(|_, b| !b.refilled_by(SIGNIN_RATE, SIGNIN_BURST, now));
        }
        if buckets.len() >= SIGNIN_ADDRESSES && !buckets.contains_key(&source(ip)) {
            return Err(std::time::Duration::from_secs(6));
        }
        buckets.entry(source(ip)).or_insert_with(|| Bucket::full(SIGNIN_BURST, now)).take(
            1.0,
            SIGNIN_RATE,
            SIGNIN_BURST,
            now,
        )
    }
}

/// The signed-in operator of a console request.
pub(crate) struct Operator {
    pub who: String,
    /// The first 8 hex digits of the session's hash, for the log.
    pub short_id: String,
    pub csrf: String,
}

/// What the store knows a session by: the SHA-256 of its token and the admin token's hash,
/// so that a new admin token ends every session signed in with the old one.
fn session_key(console: &Console, token: &str) -> String {
    crypto::sha256_hex(format!("{token}\n{}", console.state.admin_token_hash).as_bytes())
}

fn csrf_of(token: &str) -> String {
    crypto::sha256_hex(format!("csrf\n{token}").as_bytes())
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn https(parts: &Parts) -> bool {
    parts.extensions.get::<Peer>().is_some_and(|p| p.https)
}

/// Where the admin API needs a client certificate, the console needs one too.
fn certificate_missing(console: &Console, parts: &Parts) -> bool {
    console.state.cfg.tls.admin_client_ca.is_some() && !parts.extensions.get::<Peer>().is_some_and(|p| p.client_cert)
}

impl FromRequestParts<Console> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        if certificate_missing(console, parts) {
            return Err(super::failure(StatusCode::FORBIDDEN, "the console needs a client certificate over HTTPS"));
        }
        let to_signin = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console/apps");
            let next = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
            Redirect::to(&format!("/console/signin?{next}")).into_response()
        };
        let Some(token) = cookie(parts, COOKIE).filter(|t| !t.is_empty() && t.len() <= 128) else {
            return Err(to_signin());
        };
        let id_hash = session_key(console, token);
        let session = console.state.store.console_session(&id_hash, herald_core::now_ms()).await.map_err(|e| {
            tracing::error!(error = %e, "reading a console session");
            super::failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read; try again")
        })?;
        match session {
            Some(s) => Ok(Operator { who: s.who, short_id: id_hash[..8].to_string(), csrf: csrf_of(token) }),
            None => Err(to_signin()),
        }
    }
}

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SigninPage {
    error: Option<String>,
    csrf: String,
    next: String,
}

/// Only a console path is a place to return to after sign-in.
fn next_of(next: &str) -> String {
    let safe = next.starts_with("/console/") && !next.contains("//") && !next.contains('\\');
    if safe { next.to_string() } else { "/console/apps".into() }
}

fn signin_response(status: StatusCode, error: Option<String>, next: &str, https: bool) -> Response {
    let token = crypto::random_secret();
    let page = SigninPage { error, csrf: csrf_of(&token), next: next_of(next) };
    let mut response = page_response(status, page.render().unwrap_or_default());
    let cookie = format!(
        "{SIGNIN_COOKIE}={token}; Path=/console/signin; HttpOnly; SameSite=Strict; Max-Age=600{}",
        if https { "; Secure" } else { "" }
    );
    response.headers_mut().append("set-cookie", cookie.parse().expect("a cookie of URL-safe characters"));
    response
}

pub(crate) async fn signin_page(State(console): State<Console>, request: axum::extract::Request) -> Response {
    let (parts, _) = request.into_parts();
    if certificate_missing(&console, &parts) {
        return super::failure(StatusCode::FORBIDDEN, "the console needs a client certificate over HTTPS");
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let next = query.iter().find(|(k, _)| k == "next").map(|(_, v)| v.as_str()).unwrap_or("");
    signin_response(StatusCode::OK, None, next, https(&parts))
}

pub(crate) async fn signin(State(console): State<Console>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let https = https(&parts);
    if certificate_missing(&console, &parts) {
        return super::failure(StatusCode::FORBIDDEN, "the console needs a client certificate over HTTPS");
    }
    let peer = parts.extensions.get::<Peer>().map(|p| p.addr);
    if let Some(addr) = peer
        && let Err(wait) = console.signin_limit.attempt(addr.ip(), Instant::now())
    {
        tracing::warn!(target: "herald::console", peer = %addr, "console sign-in refused: too many attempts");
        let error = format!("Too many sign-in attempts from your address: try again in {} s.", wait.as_secs().max(1));
        return signin_response(StatusCode::TOO_MANY_REQUESTS, Some(error), "", https);
    }
    let fields = match Fields::read(&console, body).await {
        Ok(f) => f,
        Err(response) => return response,
    };
    let next = fields.get("next");
    let form_token = cookie(&parts, SIGNIN_COOKIE).unwrap_or("");
    if form_token.is_empty() || !crypto::constant_time_eq(csrf_of(form_token).as_bytes(), fields.get("csrf").as_bytes())
    {
        let error = "The sign-in form had expired or did not come from this console (CSRF token). Try again.";
        return signin_response(StatusCode::FORBIDDEN, Some(error.into()), next, https);
    }
    let given = crypto::sha256_hex(fields.get("token").as_bytes());
    if !crypto::constant_time_eq(given.as_bytes(), console.state.admin_token_hash.as_bytes()) {
        let peer = peer.map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(target: "herald::console", %peer, "console sign-in refused: wrong admin token");
        return signin_response(StatusCode::UNAUTHORIZED, Some("That is not the admin token.".into()), next, https);
    }
    let who: String = match fields.get("who").trim() {
        "" => "admin".into(),
        w => w.chars().filter(|c| !c.is_control()).take(MAX_WHO).collect(),
    };
    let token = crypto::random_secret();
    let now = herald_core::now_ms();
    let secs = console.state.cfg.console.session_secs;
    let session = ConsoleSession {
        id_hash: session_key(&console, &token),
        who: who.clone(),
        created_at: now,
        expires_at: now + secs as i64 * 1000,
    };
    let short_id = session.id_hash[..8].to_string();
    if let Err(e) = console.state.store.put_console_session(session, now).await {
        tracing::error!(error = %e, "storing a console session");
        return super::failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be written; try again");
    }
    tracing::info!(target: "herald::console", who = %Untrusted(&who), session = %short_id, "console sign-in");
    let secure = if https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={secs}{secure}");
    let clear = format!("{SIGNIN_COOKIE}=; Path=/console/signin; Max-Age=0");
    let mut response = Redirect::to(&next_of(next)).into_response();
    response.headers_mut().append("set-cookie", cookie.parse().expect("a cookie of URL-safe characters"));
    response.headers_mut().append("set-cookie", clear.parse().expect("a plain cookie"));
    response
}

pub(crate) async fn signout(State(console): State<Console>, request: axum::extract::Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let op = match Operator::from_request_parts(&mut parts, &console).await {
        Ok(op) => op,
        Err(response) => return response,
    };
    if let Err(response) = Fields::read_checked(&console, &op, &parts, body).await {
        return response;
    }
    if let Some(token) = cookie(&parts, COOKIE) {
        let ended = console.state.store.end_console_session(&session_key(&console, token)).await;
        if let Err(e) = ended {
            tracing::error!(error = %e, "ending a console session");
            return super::failure(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be written; try again");
        }
    }
    tracing::info!(target: "herald::console", who = %Untrusted(&op.who), session = %op.short_id, "console sign-out");
    let mut response = Redirect::to("/console/signin").into_response();
    let clear = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().append("set-cookie", clear.parse().expect("a plain cookie"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        assert_eq!(next_of("/console/apps/a1/push"), "/console/apps/a1/push");
        for bad in ["https://evil.example/", "//evil.example/console/", "/console/..\\x", "/admin/v1/apps", ""] {
            assert_eq!(next_of(bad), "/console/apps", "{bad}");
        }
    }

    #[test]
    fn sign_ins_are_limited_per_address() {
        let limit = SigninLimit::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..10 {
            assert!(limit.attempt(a, now).is_ok());
        }
        let wait = limit.attempt(a, now).unwrap_err();
        assert!(wait.as_secs_f64() > 5.9 && wait.as_secs_f64() <= 6.0, "{wait:?}");
        assert!(limit.attempt(b, now).is_ok(), "another address has its own");
        assert!(limit.attempt(a, now + std::time::Duration::from_secs(6)).is_ok(), "one back every 6 s");
    }

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        assert_ne!(csrf_of("a"), csrf_of("b"));
        assert_eq!(csrf_of("a"), csrf_of("a"));
    }
}
