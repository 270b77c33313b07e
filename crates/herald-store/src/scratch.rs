//! A throwaway PostgreSQL schema: the store tests, the behaviour tests (through
//! `herald-testkit`) and the benchmarks each work in a schema of their own in one database,
//! and drop it afterwards.

/// The environment variable that points the PostgreSQL tests at a server. Unset: those
/// tests say they are skipped; set and the server down: they fail.
pub const TEST_POSTGRES_URL: &str = "HERALD_TEST_POSTGRES_URL";

/// A fresh schema in a database, dropped with the guard.
pub struct ScratchSchema {
    url: String,
    name: String,
}

impl ScratchSchema {
    /// Creates `<prefix>_<random>` in the database at `url`.
    pub async fn create(url: &str, prefix: &str) -> Result<ScratchSchema, tokio_postgres::Error> {
        let name = format!("{prefix}_{}", herald_core::crypto::random_alnum(12));
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {name}")).await?;
        Ok(ScratchSchema { url: url.to_owned(), name })
    }

    /// A schema in the database of [`TEST_POSTGRES_URL`]: `None` (and a line saying the
    /// test is skipped, and why) when the variable is unset; a panic when it is set and
    /// PostgreSQL does not answer.
    pub async fn for_test() -> Option<ScratchSchema> {
        let Ok(url) = std::env::var(TEST_POSTGRES_URL) else {
            eprintln!("skipped: {TEST_POSTGRES_URL} is not set, so this is not tested on PostgreSQL here");
            return None;
        };
        Some(
            Self::create(&url, "herald_test")
                .await
                .unwrap_or_else(|e| panic!("{TEST_POSTGRES_URL} is set but PostgreSQL does not answer: {e}")),
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection options that put a client into this schema.
    pub fn options(&self) -> String {
        format!("-c search_path={}", self.name)
    }

    /// A store URL whose connections work in this schema.
    pub fn store_url(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{}", self.url, self.name)
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.name.clone());
        // Drop may run inside a runtime: the async cleanup runs on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE")).await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop schema {}: {dropped:?}", self.name);
        }
    }
}
