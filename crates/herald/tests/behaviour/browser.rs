//! A real browser for the console's tests: headless Chromium (Debian's `chromium`) driven
//! over WebDriver by `chromedriver` (Debian's `chromium-driver`), with fantoccini.
//! `HERALD_TEST_CHROMEDRIVER` names chromedriver (`.ci/run` installs both packages when
//! missing and sets it). Unset: the browser tests are skipped, saying so; set and broken:
//! they fail. `HERALD_CONSOLE_SCREENSHOTS` names a directory for the screenshots of every
//! page (docs/console holds the ones docs/console.md shows).

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

pub struct Browser {
    pub c: Client,
    base: String,
    shots: Option<PathBuf>,
    _driver: tokio::process::Child,
}

/// How long a page may take to show what a test waits for.
const WAIT: Duration = Duration::from_secs(30);

impl Browser {
    /// A fresh headless Chromium on the console at `http://{http}`; `None` (skipped) when
    /// `HERALD_TEST_CHROMEDRIVER` is unset.
    pub async fn start(http: &str) -> Option<Browser> {
        let Ok(driver_path) = std::env::var("HERALD_TEST_CHROMEDRIVER") else {
            eprintln!("skipped: HERALD_TEST_CHROMEDRIVER is not set (.ci/run installs chromium and chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = tokio::process::Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{driver_path} starts: {e}"));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        let c = loop {
            match ClientBuilder::rustls().expect("a TLS client").capabilities(caps.clone()).connect(&url).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() > deadline => panic!("chromedriver answers at {url}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let shots = std::env::var("HERALD_CONSOLE_SCREENSHOTS").ok().map(PathBuf::from);
        Some(Browser { c, base: format!("http://{http}"), shots, _driver: driver })
    }

    pub async fn open(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.find(css).await.select_by_value(value).await.unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.c.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("{css} on {}: {e}\n{}", self.path().await, self.page_text().await),
        }
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub async fn page_text(&self) -> String {
        self.js("return document.body.innerText", vec![]).await.as_str().unwrap_or("").to_string()
    }

    /// Waits until the text of `css` contains `needle`; that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self.c.find_all(Locator::Css(css)).await.unwrap_or_default();
            for e in found {
                if let Ok(t) = e.text().await
                    && t.contains(needle)
                {
                    return t;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no {css} with {needle:?} on {}:\n{}", self.path().await, self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reloads the page at `path` until its text contains `needle`.
    pub async fn reload_until(&self, path: &str, needle: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.open(path).await;
            let text = self.page_text().await;
            if needle(&text) {
                return text;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{path} never showed what was expected:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.c.execute(script, args).await.unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// The value shown beside `name` in the page's facts.
    pub async fn fact(&self, name: &str) -> String {
        let script = "for (const dt of document.querySelectorAll('dl.facts dt')) \
                      { if (dt.textContent.trim() === arguments[0]) return dt.nextElementSibling.textContent.trim(); } \
                      return null;";
        match self.js(script, vec![json!(name)]).await {
            Value::String(s) => s,
            _ => panic!("no fact {name} on {}:\n{}", self.path().await, self.page_text().await),
        }
    }

    /// The form controls of the page that no label names (hidden inputs aside).
    pub async fn unlabelled(&self) -> Vec<String> {
        let script = "return Array.from(document.querySelectorAll('input, select, textarea'))\
            .filter(e => e.type !== 'hidden')\
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
            .map(e => e.outerHTML);";
        serde_json::from_value(self.js(script, vec![]).await).unwrap()
    }

    /// Checks every control is labelled, then saves a screenshot as `{name}.png` when
    /// screenshots are asked for.
    pub async fn page(&self, name: &str) {
        let unlabelled = self.unlabelled().await;
        assert!(unlabelled.is_empty(), "unlabelled controls on {name}: {unlabelled:?}");
        if let Some(dir) = &self.shots {
            std::fs::create_dir_all(dir).unwrap();
            let png = self.c.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}
