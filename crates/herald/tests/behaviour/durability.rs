//! Nothing accepted is lost: SIGKILL right after a 200, graceful SIGTERM, restarts.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn a_message_accepted_right_before_sigkill_is_delivered_after_restart() {
    let Some(mut server) = start_process().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "survive").await;
    server.kill9();
    let server = server.restart().await;
    let (creds, app) = (creds.on(&server), app.via(&server));
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    app.wait_status(&m, "delivered").await;
}

/// Issue 12: the database files were readable by every local user (0644 in a 0755 folder).
/// The real binary makes its data directory 0700 (also one that existed open) and every
/// file in it 0600.
#[tokio::test]
async fn the_data_directory_and_its_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = TestProcess::start_in(herald_bin!(), &dir, &[]).await;
    let app = server.create_app().await;
    app.register("i").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "db")), "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    // A directory that is not Herald's (a data dir pointed at /tmp or a home by mistake) is
    // left as it is, with a warning; Herald's own files in it are still 0600.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(shared.join("notes.txt"), "someone else's").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
    let other = TestProcess::start_in(herald_bin!(), &shared, &[]).await;
    assert_eq!(mode(&shared), 0o755);
    assert!(other.log.contains("not Herald's"), "{:?}", other.log.tail(20));
    assert_eq!(mode(&shared.join("herald.db")), 0o600);
}

#[tokio::test]
async fn sigterm_stops_gracefully_and_keeps_acknowledgements() {
    let Some(mut server) = start_process().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut device = TestDevice::connect(&creds).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "ack before stop").await;
    device.next_push().await;
    // The acknowledgement may still be queued: a graceful stop must commit it.
    server.terminate();
    let exit = server.wait_exit(Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(exit.success(), "exit status {exit:?}");
    device.closed().await;
    let server = server.restart().await;
    let app = app.via(&server);
    app.wait_status(&m, "delivered").await;
}

/// Starts `herald serve` without an admin token; returns the child and its stdout lines
/// up to the ready line.
async fn start_untokened(dir: &std::path::Path) -> (std::process::Child, Vec<String>) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("HERALD_ADMIN_TOKEN")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let ready = line.starts_with("herald ready");
            lines.push(line);
            if ready {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    (child, lines)
}

fn http_of(lines: &[String]) -> String {
    let ready = lines.iter().find(|l| l.starts_with("herald ready")).expect("ready line");
    ready.split_whitespace().find_map(|w| w.strip_prefix("http=")).unwrap().to_string()
}

#[tokio::test]
async fn admin_token_is_generated_printed_once_and_kept_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_untokened(dir.path()).await;
    let token_line = lines.iter().find(|l| l.contains("admin token")).expect("token printed");
    let token = token_line.rsplit(' ').next().unwrap().to_string();
    let auth = vec![("authorization".to_string(), format!("Bearer {token}"))];
    let r = herald::http_client::request(&http_of(&lines), "GET", "/admin/v1/apps", &auth, Default::default())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r =
        herald::http_client::request(&http_of(&lines), "GET", "/admin/v1/apps", &[], Default::default()).await.unwrap();
    assert_eq!(r.status, 401);
    child.kill().unwrap();
    child.wait().unwrap();
    // The token is not stored in clear anywhere in the data dir.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "token found in clear");
    }
    // The second start prints nothing and the same token still works.
    let (mut child, lines) = start_untokened(dir.path()).await;
    assert!(!lines.iter().any(|l| l.contains("admin token")));
    let r = herald::http_client::request(&http_of(&lines), "GET", "/admin/v1/apps", &auth, Default::default())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn cli_app_create_prints_the_admin_api_answer() {
    let Some(server) = start_process().await else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["app", "create", "--name", "From CLI", "--server", &format!("http://{}", server.http)])
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in ["appId", "appKey", "apiKeyId", "apiSecret", "bindSecret"] {
        assert!(j[field].as_str().is_some_and(|s| !s.is_empty()), "{field} missing in {j}");
    }
    assert_eq!(j["name"], "From CLI");
    // `app show` and `key list` (issue 13): the app with its key, never a secret.
    let app_id = j["appId"].as_str().unwrap();
    let server_url = format!("http://{}", server.http);
    for (args, field) in [(["app", "show"], "keys"), (["key", "list"], "keys")] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
            .args(["--app", app_id, "--server", &server_url])
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(shown[field][0]["keyId"], j["apiKeyId"], "{args:?}: {shown}");
        assert!(!shown.to_string().contains(j["apiSecret"].as_str().unwrap()), "a secret shown by {args:?}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["app", "show", "--app", "anosuchapp", "--server", &server_url])
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown app is an error");
    // The answer is printed as it came; the exit status says it failed.
    assert!(String::from_utf8_lossy(&out.stdout).contains("APP_NOT_EXIST"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald")).args(["config", "default"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(herald::config::Config::from_toml(&text).unwrap(), herald::config::Config::default());
}

#[tokio::test]
async fn a_config_file_sets_limits_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    // The file's addresses are overridden by the flags TestServer passes (port 0).
    std::fs::write(&config, "http_addr = \"127.0.0.1:1\"\n[limits]\nmax_simple_targets = 2\n").unwrap();
    let server = TestProcess::start_in(herald_bin!(), dir.path(), &["--config", config.to_str().unwrap()]).await;
    let app = server.create_app().await;
    let r = app
        .push_simple(serde_json::json!({"deliveryType": 1, "targetMsgkey": {"a": "1", "b": "2", "c": "3"},
            "title": "t", "content": "c", "expiredSeconds": 60}))
        .await;
    assert_eq!(r.json()["resultCode"], "SINGLE_PUSH_TARGET_TOO_MUCH");
    assert!(r.json()["resultMessage"].as_str().unwrap().contains("at most 2"));
}

#[tokio::test]
async fn every_invalid_setting_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[log]\nformat = \"xml\"\n[mqtt]\nmax_inflight = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--config", config.to_str().unwrap(), "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log.format") && err.contains("mqtt.max_inflight"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--log-format", "yaml", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a flag is validated like the file");
}

/// The soak ledger, short (`herald-bench soak` runs it long): pushes every 20 ms to 20
/// connected devices while the node is killed with SIGKILL every 0.3-0.9 s and restarted,
/// 10 times; every push answered 200 reaches its device, none refused reaches anyone.
#[tokio::test]
async fn pushes_accepted_across_ten_kill_9_restarts_all_arrive() {
    let cfg = herald_testkit::soak::SoakConfig {
        cycles: 10,
        devices: 20,
        push_every: Duration::from_millis(20),
        run_ms: (300, 900),
        settle: Duration::from_secs(20),
        down_ms: (0, 0),
        faults: Vec::new(),
        nats_servers: 1,
    };
    let Some(ledger) = herald_testkit::soak::run(herald_bin!(), crate::BACKEND, &cfg).await else { return };
    eprintln!("soak ledger: {ledger}");
    assert!(ledger.holds(), "{ledger}: lost {:?}, refused but delivered {:?}", ledger.lost, ledger.refused_delivered);
    assert_eq!(ledger.cycles, 10);
    assert!(ledger.accepted >= 50, "the pushes went on between the kills: {ledger}");
}

#[tokio::test]
async fn sighup_without_tls_leaves_the_node_running() {
    if crate::BACKEND != herald_testkit::Backend::Sqlite {
        return;
    }
    let Some(mut node) = start_process().await else { return };
    node.hangup();
    eventually("the SIGHUP logged", || async {
        node.log.tail(20).iter().any(|l| l.contains("nothing to reload")).then_some(())
    })
    .await;
    assert!(node.wait_exit(Duration::from_millis(300)).is_none(), "still running");
    assert_eq!(node.call("GET", "/healthz", &[], Default::default()).await.status, 200);
}
