//! The console as a person uses it, in a real headless Chromium (see [`crate::browser`]):
//! sign in; create an app and a template (with its live preview); send a template push from
//! the quick-push page to the page's own test device and see it arrive; open it; revoke it
//! and see the revoke arrive; upload an APNs `.p12` and see its expiry; see the pushes in the
//! analytics chart; a wrong token, a missing CSRF token, sign-out and an expired session are
//! refused. Every page visited has a label for each control; the quick-push form is walked
//! with the keyboard. Run on SQLite only (the console reads through the API).

use std::time::Duration;

use fantoccini::key::Key;
use serde_json::json;

use crate::browser::Browser;
use crate::common::*;

fn sqlite_only() -> bool {
    if !matches!(crate::BACKEND, Backend::Sqlite) {
        eprintln!("skipped: the console tests run on SQLite only");
        return false;
    }
    true
}

async fn sign_in(b: &Browser, token: &str) {
    b.open("/console").await;
    assert_eq!(b.path().await, "/console/signin", "a console page without a session goes to sign-in");
    b.fill("#signin-token", token).await;
    b.fill("#signin-who", "ci-operator").await;
    b.click("#signin button[type=submit]").await;
}

#[tokio::test]
async fn an_operator_pushes_to_the_test_device_revokes_and_sees_it_counted() {
    if !sqlite_only() {
        return;
    }
    let Some(node) = start_server().await else { return };
    let Some(b) = Browser::start(&node.http).await else { return };

    // A wrong token is refused, in words.
    sign_in(&b, "not-the-token").await;
    b.wait_text("#signin-error", "not the admin token").await;
    b.page("signin").await;
    assert!(node.log_contains("console sign-in refused: wrong admin token"));
    sign_in(&b, ADMIN_TOKEN).await;
    b.wait_text("h1", "Apps").await;
    assert!(node.log_contains("console sign-in"), "the sign-in is logged");

    // An app; its secrets are shown once.
    b.fill("#create-app-name", "Shop").await;
    b.click("#create-app button[type=submit]").await;
    b.wait_text("h1", "App Shop created").await;
    let app = b.fact("appId").await;
    assert!(b.fact("apiSecret").await.len() >= 32);
    b.page("app-created").await;
    b.open("/console/apps").await;
    b.page("apps").await;
    b.open(&format!("/console/apps/{app}")).await;
    b.wait_text("table", "hmac").await;
    b.page("app").await;
    assert!(node.log_contains("POST /admin/v1/apps"), "the action is logged with who and what");
    assert!(node.log_contains("ci-operator"));

    // A template, previewed as it is typed.
    b.open(&format!("/console/apps/{app}/templates")).await;
    b.fill("#template-templateName", "order").await;
    b.fill("#template-title", "Order #id#").await;
    b.fill("#template-content", "Hello #name#, order #id# has shipped").await;
    b.wait_text("#preview-error", "#id#").await;
    b.fill("#preview-values", "id=42\nname=Ada").await;
    b.wait_text("#preview-title", "Order 42").await;
    b.wait_text("#preview-content", "Hello Ada, order 42 has shipped").await;
    b.click("#template button[type=submit]").await;
    b.wait_text(".notice", "Template order created").await;
    // A template may be called anything, "preview" too: its page is its own.
    b.fill("#template-templateName", "preview").await;
    b.fill("#template-title", "Preview #x#").await;
    b.fill("#template-content", "c").await;
    b.click("#template button[type=submit]").await;
    b.wait_text(".notice", "Template preview created").await;
    b.open(&format!("/console/apps/{app}/templates/preview")).await;
    b.wait_text("h1", "Template preview").await;
    b.open(&format!("/console/apps/{app}/templates")).await;
    b.wait_text("table", "Order #id#").await;
    b.page("templates").await;

    // The page's test device, in a window of its own.
    let console_window = b.c.window().await.unwrap();
    let device_window = b.c.new_window(false).await.unwrap().handle;
    b.c.switch_to_window(device_window.clone()).await.unwrap();
    b.open(&format!("/console/apps/{app}/test-device")).await;
    b.click("#td-connect").await;
    b.wait_text("#td-status", "Connected as").await;
    let device = b.text("#td-device").await;
    assert!(device.starts_with('d'), "{device}");

    // The quick push, walked with the keyboard first.
    b.c.switch_to_window(console_window.clone()).await.unwrap();
    b.open(&format!("/console/apps/{app}/push")).await;
    keyboard_walks_the_form(&b, "push").await;
    b.page("push").await;
    b.select("#push-kind", "template").await;
    b.fill("#push-targets", &device).await;
    b.fill("#push-templateName", "order").await;
    b.fill("#push-values", "id=42\nname=Ada").await;
    b.click("#push button[type=submit]").await;
    let accepted = b.wait_text(".notice", "Accepted: task").await;
    let task = accepted.trim_start_matches("Accepted: task ").trim_end_matches('.').to_string();
    let curl = b.text("figure.code code").await;
    assert!(curl.contains("/v1/push/template") && curl.contains("herald sign"), "{curl}");
    assert!(curl.contains(&format!("\"targetMsgkey\":{{\"{device}\"")), "{curl}");
    b.page("push-sent").await;

    // It arrives on the test device, which acknowledges it and opens it.
    b.c.switch_to_window(device_window.clone()).await.unwrap();
    let row = b.wait_text("#td-messages tr.td-notification", "Order 42").await;
    assert!(row.contains("Hello Ada, order 42 has shipped") && row.contains("sent"), "{row}");
    b.click("#td-messages tr.td-notification button").await;
    b.wait_text("#td-messages tr.td-notification", "opened sent").await;
    b.page("test-device").await;

    // The task shows the device's delivery; revoking it reaches the device.
    b.c.switch_to_window(console_window.clone()).await.unwrap();
    let task_path = format!("/console/apps/{app}/tasks/{task}");
    b.reload_until(&task_path, |t| t.contains(&format!("{device} opened"))).await;
    b.page("task").await;
    b.click("#revoke button[type=submit]").await;
    b.wait_text(".notice", "Task revoked: 1 messages").await;
    b.c.switch_to_window(device_window.clone()).await.unwrap();
    b.wait_text("#td-messages tr.td-revoke", "revoke").await;
    b.c.switch_to_window(console_window.clone()).await.unwrap();
    // A push at a fixed time in a time zone waits as a schedule, and is cancelled.
    b.open(&format!("/console/apps/{app}/push")).await;
    b.select("#push-kind", "template").await;
    b.fill("#push-targets", &device).await;
    b.fill("#push-templateName", "order").await;
    b.fill("#push-values", "id=43\nname=Bo").await;
    b.select("#push-when", "1").await;
    b.fill("#push-timeZone", "Asia/Tokyo").await;
    let tomorrow =
        jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap()).date().tomorrow().unwrap();
    let when = format!("{tomorrow}T09:30");
    b.js("document.getElementById('push-fixedTime').value = arguments[0]", vec![json!(when)]).await;
    b.click("#push button[type=submit]").await;
    b.wait_text(".notice", "Accepted: schedule").await;
    let curl = b.text("figure.code code").await;
    let at = tomorrow.at(9, 30, 0, 0).in_tz("Asia/Tokyo").unwrap().timestamp().as_millisecond();
    assert!(curl.contains(&format!("\\\"fixedTime\\\":{at}")) && curl.contains("Asia/Tokyo"), "{curl}");
    b.open(&format!("/console/apps/{app}/tasks")).await;
    b.wait_text("table", &task).await;
    b.wait_text("table", "waiting").await;
    b.page("tasks").await;
    b.click("table button").await;
    b.wait_text(".notice", "cancelled").await;
    b.wait_text("table", "cancelled").await;
    b.open(&format!("/console/apps/{app}/devices?platform=web")).await;
    b.wait_text("table", &device).await;
    b.wait_text("table", "yes, on").await;
    b.page("devices").await;
    b.click(&format!("a[href$='/devices/{device}']")).await;
    b.wait_text("h1", &format!("Device {device}")).await;
    assert_eq!(b.fact("Platform").await, "web");
    assert!(b.fact("Online").await.starts_with("yes, on node-1"));
    b.wait_text("main", "Nothing waits for this device.").await;
    b.page("device").await;

    // An APNs certificate: its expiry shown, with the warning of a near end.
    let ca = fakes::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let p12 = dir.path().join("apns.p12");
    std::fs::write(&p12, fakes::apns_p12(&ca, "Apple Push Services: com.example.shop", 20, "s3cret")).unwrap();
    b.open(&format!("/console/apps/{app}/channels")).await;
    b.find("#apns-certificate-certificate").await.send_keys(p12.to_str().unwrap()).await.unwrap();
    let read = "return document.getElementById('apns-certificate-certificate-data').value.length";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.js(read, vec![]).await.as_u64() == Some(0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.fill("#apns-certificate-password", "s3cret").await;
    b.fill("#apns-certificate-bundleId", "com.example.shop").await;
    b.click("#apns-certificate button[type=submit]").await;
    let expiry = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(20 * 24);
    let day = expiry.strftime("%Y-%m-%d").to_string();
    let saved = b.wait_text(".notice", "certificate expires").await;
    assert!(saved.contains(&day), "{saved} names {day}");
    b.wait_text("table", "expires within 30 days").await;
    b.page("channels").await;

    // The analytics count what was just sent: pushed, arrived and opened.
    let analytics = format!("/console/apps/{app}/analytics");
    b.reload_until(&analytics, |t| fact_at_least(t, "Opened", 1)).await;
    let pushed: u64 = b.fact("Pushed").await.parse().unwrap();
    let arrived: u64 = b.fact("Arrived").await.parse().unwrap();
    assert!(pushed >= 1 && arrived >= 1, "pushed {pushed}, arrived {arrived}");
    let max = b.js("return document.querySelector('figure.chart svg').dataset.max", vec![]).await;
    assert!(max.as_str().unwrap().parse::<u64>().unwrap() >= 1, "the chart draws the counts: {max}");
    b.page("analytics").await;

    // The remaining pages render and label their controls.
    for (path, name) in [
        (format!("/console/apps/{app}/templates/order"), "template-edit"),
        (format!("/console/apps/{app}/receipts"), "receipts"),
        ("/console/node".to_string(), "node"),
    ] {
        b.open(&path).await;
        b.find("main h1").await;
        b.page(name).await;
    }
    // The node page lists the cluster: this node holds the test device, and the leases.
    let cluster = b.wait_text("table", "Device connections per node").await;
    assert!(cluster.contains("node-1 1"), "{cluster}");
    b.wait_text("table", "analytics-tally").await;

    // A form without the session's CSRF token is refused and changes nothing.
    let forged = "return fetch('/console/apps', {method: 'POST', headers: {'content-type': \
                  'application/x-www-form-urlencoded'}, body: arguments[0]}).then(r => r.status);";
    assert_eq!(b.js(forged, vec![json!("name=Forged")]).await, json!(403), "no CSRF token");
    assert_eq!(b.js(forged, vec![json!("name=Forged&csrf=0123")]).await, json!(403), "a wrong CSRF token");
    let apps = node.admin("GET", "/admin/v1/apps", json!(null)).await.json();
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1, "{apps}");
    assert!(node.log_contains("CSRF token missing or wrong"));

    // Sign-out ends the session.
    b.click("header form.signout button").await;
    b.find("#signin-token").await;
    b.open("/console/apps").await;
    assert_eq!(b.path().await, "/console/signin");
    b.close().await;
}

/// Whether the fact `name` of a page's text is a number of at least `n`.
fn fact_at_least(text: &str, name: &str, n: u64) -> bool {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line == name {
            let value = lines.next().unwrap_or("");
            return value.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).is_some_and(|v| v >= n);
        }
    }
    false
}

/// Tab from the form's first control reaches every control of the form in order, and its
/// submit button last.
async fn keyboard_walks_the_form(b: &Browser, form: &str) {
    let script = "return Array.from(document.getElementById(arguments[0]).querySelectorAll('input, select, textarea, button'))\
                  .filter(e => e.type !== 'hidden').map(e => e.id || e.type);";
    let controls: Vec<String> = serde_json::from_value(b.js(script, vec![json!(form)]).await).unwrap();
    assert!(controls.len() > 10, "{controls:?}");
    b.js("document.getElementById(arguments[0]).focus()", vec![json!(controls[0])]).await;
    let mut walked = vec![controls[0].clone()];
    for _ in 1..controls.len() {
        // A date-and-time control takes one Tab per part (day, month, year, hour, minute).
        for _ in 0..8 {
            b.c.active_element().await.unwrap().send_keys(&Key::Tab.to_string()).await.unwrap();
            let focused = b.js("const e = document.activeElement; return e.id || e.type;", vec![]).await;
            let focused = focused.as_str().unwrap_or("").to_string();
            if walked.last() != Some(&focused) {
                walked.push(focused);
                break;
            }
        }
    }
    assert_eq!(walked, controls, "Tab walks the form in order");
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    if !sqlite_only() {
        return;
    }
    let Ok(node) = TestServer::run(|cfg| cfg.console.session_secs = 1).await else { panic!("the node starts") };
    let Some(b) = Browser::start(&node.http).await else { return };
    sign_in(&b, ADMIN_TOKEN).await;
    b.wait_text("h1", "Apps").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.open("/console/node").await;
    assert_eq!(b.path().await, "/console/signin", "a session past its end signs in again");
    b.find("#signin-token").await;
    b.close().await;
}

/// Signs in with curl over `base` (cookies in `jar`); the response headers of the sign-in.
async fn curl_sign_in(base: &str, ca_file: &std::path::Path, jar: &std::path::Path) -> String {
    let jar = jar.to_str().unwrap();
    let (status, page) = crate::tls::curl(ca_file, &format!("{base}/console/signin"), &["-c", jar, "-b", jar]).await;
    assert_eq!(status, "200", "{page}");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let form = ["-c", jar, "-b", jar, "-D", "-", "-o", "/dev/null", "--data-urlencode"];
    let token = format!("token={ADMIN_TOKEN}");
    let csrf = format!("csrf={csrf}");
    let args: Vec<&str> = form.iter().copied().chain([token.as_str(), "--data-urlencode", csrf.as_str()]).collect();
    let (status, headers) = crate::tls::curl(ca_file, &format!("{base}/console/signin"), &args).await;
    assert_eq!(status, "303", "{headers}");
    headers
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_over_https() {
    let Some(crate::tls::TlsNode { node, ca_file, dir, .. }) = crate::tls::tls_node("").await else { return };
    let https = format!("https://localhost:{}", crate::tls::port(&node.listener("https").unwrap()));
    let headers = curl_sign_in(&https, &ca_file, &dir.path().join("jar-https")).await;
    let cookie = headers.lines().find(|l| l.starts_with("set-cookie: herald_console=")).expect(&headers);
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Secure", "Max-Age=28800"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    let http = format!("http://{}", node.listener("http").unwrap());
    let headers = curl_sign_in(&http, &ca_file, &dir.path().join("jar-http")).await;
    let cookie = headers.lines().find(|l| l.starts_with("set-cookie: herald_console=")).expect(&headers);
    assert!(cookie.contains("HttpOnly") && !cookie.contains("Secure"), "plain HTTP: {cookie}");
}

/// An app is renamed and set to trust client binds through the admin API the console uses.
#[tokio::test]
async fn an_app_is_renamed_and_its_bind_secret_shown_to_the_admin() {
    let Some(node) = start_server().await else { return };
    let app = node.create_app().await;
    let path = format!("/admin/v1/apps/{}", app.app_id);
    let r = node.admin("PATCH", &path, json!({"name": "  Renamed  ", "trustClientBind": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!((r.json()["name"].clone(), r.json()["trustClientBind"].clone()), (json!("Renamed"), json!(true)));
    let shown = node.admin("GET", &path, json!(null)).await.json();
    assert_eq!(shown["bindSecret"], json!(app.bind_secret), "{shown}");
    let r = node.admin("PATCH", &path, json!({"name": ""})).await;
    assert_eq!((r.status, r.json()["resultCode"].clone()), (400, json!("INVALID_PARAM")));
    let r = node.admin("PATCH", &path, json!({"color": "blue"})).await;
    assert_eq!(r.status, 400, "an unknown field");
    let r = node.admin("PATCH", "/admin/v1/apps/nope", json!({"name": "x"})).await;
    assert_eq!((r.status, r.json()["resultCode"].clone()), (404, json!("APP_NOT_EXIST")));
}

/// What a browser cannot easily send: a sign-in without its form's token, a query string the
/// pages cannot read. Each refused in our words.
#[tokio::test]
async fn odd_requests_are_refused_in_our_words() {
    let Some(node) = start_server().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (jar, none) = (dir.path().join("jar"), dir.path().join("no-ca.pem"));
    let base = format!("http://{}", node.http);
    let token = format!("token={ADMIN_TOKEN}");
    let (status, page) =
        crate::tls::curl(&none, &format!("{base}/console/signin"), &["--data-urlencode", &token]).await;
    assert_eq!(status, "403", "a sign-in without the form's CSRF token: {page}");
    assert!(page.contains("did not come from this console"), "{page}");
    curl_sign_in(&base, &none, &jar).await;
    let jar = jar.to_str().unwrap();
    let app = node.create_app().await;
    let twice = format!("{base}/console/apps/{}/tasks?type=simple&type=template", app.app_id);
    let (status, page) = crate::tls::curl(&none, &twice, &["-b", jar]).await;
    assert_eq!(status, "400", "{page}");
    assert!(page.contains("query cannot be read") && !page.contains("duplicate field"), "{page}");
    let (status, page) = crate::tls::curl(&none, &format!("{base}/console/apps/no-such-app/tasks"), &["-b", jar]).await;
    assert_eq!(status, "404", "{page}");
    assert!(page.contains("There is no such app."), "{page}");
    // Guessing the token: 10 attempts an address, then one every 6 s (two were made above).
    let mut statuses = Vec::new();
    for _ in 0..9 {
        let (status, page) =
            crate::tls::curl(&none, &format!("{base}/console/signin"), &["--data-urlencode", "token=guess"]).await;
        statuses.push(status);
        if statuses.last().unwrap() == "429" {
            assert!(page.contains("Too many sign-in attempts"), "{page}");
        }
    }
    assert_eq!(statuses.iter().filter(|s| *s == "429").count(), 1, "{statuses:?}");
    assert_eq!(statuses.last().unwrap(), "429", "{statuses:?}");
}

/// A node restarted with a new admin token does not know the sessions of the old one.
#[tokio::test]
async fn a_new_admin_token_ends_the_sessions_of_the_old_one() {
    if !sqlite_only() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (jar, none) = (dir.path().join("jar"), dir.path().join("no-ca.pem"));
    let data = dir.path().join("data");
    let mut node = TestProcess::start_in(herald_bin!(), &data, &[]).await;
    let base = format!("http://{}", node.http);
    curl_sign_in(&base, &none, &jar).await;
    let jar = jar.to_str().unwrap();
    let (status, _) = crate::tls::curl(&none, &format!("{base}/console/node"), &["-b", jar]).await;
    assert_eq!(status, "200", "signed in");
    node.terminate();
    assert!(node.wait_exit(Duration::from_secs(20)).is_some(), "the node stops");
    let node = TestProcess::start_in(herald_bin!(), &data, &["--admin-token", "a-new-admin-token-0123456789"]).await;
    let base = format!("http://{}", node.http);
    let (status, page) = crate::tls::curl(&none, &format!("{base}/console/node"), &["-b", jar, "-D", "-"]).await;
    assert_eq!(status, "303", "{page}");
    assert!(page.contains("location: /console/signin"), "{page}");
}
