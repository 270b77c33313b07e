//! The database's files: its owner's alone.

use std::path::Path;

use crate::{StoreError, StoreResult};

/// Creates the database file (and its folder) readable by its owner alone, or makes it so:
/// SQLite gives its WAL and shared-memory files the database file's mode.
pub(super) fn private_file(path: &Path) -> StoreResult<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| StoreError::Unavailable(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(failed)?;
    for file in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{file}", path.display()));
        if let Ok(meta) = std::fs::metadata(&file)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(failed)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::{Store, StoreConfig};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Issue 12: the database, its WAL and its shared memory were 0644 in a 0755 folder.
    #[tokio::test]
    async fn the_database_files_are_their_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("herald.db");
        let store = super::super::SqliteStore::open(&path, &StoreConfig::default()).unwrap();
        store.init_setting("probe", "written").await.unwrap();
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        for file in ["herald.db", "herald.db-wal", "herald.db-shm"] {
            assert_eq!(mode(&dir.path().join("data").join(file)), 0o600, "{file}");
        }
        drop(store);

        // A database made readable by others (an older Herald, a copy) is made private again.
        for file in ["herald.db", "herald.db-wal", "herald.db-shm"] {
            let file = dir.path().join("data").join(file);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
        let _store = super::super::SqliteStore::open(&path, &StoreConfig::default()).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
