//! Where a device keeps what must survive a restart: its identity (deviceId and token) and
//! the window of messageIds it already gave the app. The app may bring its own [`Store`]
//! (Android's SharedPreferences, a keychain…); [`FileStore`] keeps both in one JSON file,
//! [`MemoryStore`] in memory (tests, short-lived tools).

use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A registered device: what `/device/v1/register` answered, and the install it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub install_id: String,
    pub device_id: String,
    pub device_token: String,
}

/// What a device keeps. Calls are rare (a registration, one save per message received), so
/// a blocking implementation is fine.
pub trait Store: Send + Sync + 'static {
    fn identity(&self) -> Option<Identity>;
    fn save_identity(&self, identity: &Identity) -> std::io::Result<()>;
    /// The messageIds already given to the app, oldest first.
    fn seen(&self) -> Vec<String>;
    fn save_seen(&self, ids: &[String]) -> std::io::Result<()>;
}

#[derive(Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    identity: Option<Identity>,
    #[serde(default)]
    seen: Vec<String>,
}

/// Everything in memory: lost when the process ends.
#[derive(Default)]
pub struct MemoryStore(Mutex<Saved>);

impl Store for MemoryStore {
    fn identity(&self) -> Option<Identity> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).identity.clone()
    }
    fn save_identity(&self, identity: &Identity) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).identity = Some(identity.clone());
        Ok(())
    }
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).seen.clone()
    }
    fn save_seen(&self, ids: &[String]) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).seen = ids.to_vec();
        Ok(())
    }
}

/// One JSON file, replaced whole on each save (written beside it, then renamed, so a crash
/// leaves the old file or the new one).
pub struct FileStore {
    path: PathBuf,
    saved: Mutex<Saved>,
}

impl FileStore {
    /// Reads `path` if it exists; a file that does not read as this store's is an error
    /// (never silently replaced: it holds the device's identity).
    pub fn open(path: impl Into<PathBuf>) -> std::io::Result<FileStore> {
        let path = path.into();
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e),
        };
        Ok(FileStore { path, saved: Mutex::new(saved) })
    }

    fn write(&self, change: impl FnOnce(&mut Saved)) -> std::io::Result<()> {
        let mut saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut saved);
        let text = serde_json::to_vec_pretty(&*saved).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Store for FileStore {
    fn identity(&self) -> Option<Identity> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner()).identity.clone()
    }
    fn save_identity(&self, identity: &Identity) -> std::io::Result<()> {
        self.write(|s| s.identity = Some(identity.clone()))
    }
    fn seen(&self) -> Vec<String> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner()).seen.clone()
    }
    fn save_seen(&self, ids: &[String]) -> std::io::Result<()> {
        self.write(|s| s.seen = ids.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_store_reads_back_what_it_saved() {
        let dir = std::env::temp_dir().join(format!("herald-client-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("device.json");
        let _ = std::fs::remove_file(&path);
        let store = FileStore::open(&path).unwrap();
        assert_eq!(store.identity(), None);
        let id = Identity { install_id: "i".into(), device_id: "d".into(), device_token: "t".into() };
        store.save_identity(&id).unwrap();
        store.save_seen(&["m1".into(), "m2".into()]).unwrap();
        let again = FileStore::open(&path).unwrap();
        assert_eq!((again.identity(), again.seen()), (Some(id), vec!["m1".to_string(), "m2".to_string()]));
        std::fs::write(&path, b"not json").unwrap();
        assert!(FileStore::open(&path).is_err(), "a broken file is not replaced silently");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
