//! Each add-on's facts as its provider keeps them: one JSON file per add-on, written
//! atomically (a temporary file renamed over the old one), readable only by Kiln.

use crate::{AddonError, Result};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};

/// The files of one provider: `<dir>/<addon id>.json`.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: PathBuf) -> StateDir {
        StateDir { dir }
    }

    fn file(&self, addon_id: &str) -> Result<PathBuf> {
        // Ids are UUIDs made by the platform; anything else must not become a path.
        if addon_id.is_empty()
            || addon_id.len() > 64
            || !addon_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(kiln_model::Invalid::new("id", "Not an add-on id").into());
        }
        Ok(self.dir.join(format!("{addon_id}.json")))
    }

    pub fn load<T: DeserializeOwned>(&self, addon_id: &str) -> Result<Option<T>> {
        let path = self.file(addon_id)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| AddonError::Service {
                        context: format!("reading {}", path.display()),
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(AddonError::Io {
                context: format!("reading {}", path.display()),
                source: e,
            }),
        }
    }

    pub fn save<T: Serialize>(&self, addon_id: &str, value: &T) -> Result<()> {
        let path = self.file(addon_id)?;
        create_private_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| AddonError::Service {
            context: "encoding an add-on's state".into(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        write_private(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path).map_err(AddonError::io(format!("writing {}", path.display())))
    }

    pub fn remove(&self, addon_id: &str) -> Result<()> {
        let path = self.file(addon_id)?;
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AddonError::Io {
                context: format!("removing {}", path.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Every add-on id with a state file.
    pub fn ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    /// The ids whose state was last written before `t`.
    pub fn ids_written_before(&self, t: std::time::SystemTime) -> Vec<String> {
        self.ids()
            .into_iter()
            .filter(|id| {
                std::fs::metadata(self.dir.join(format!("{id}.json")))
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m < t)
            })
            .collect()
    }
}

/// Creates `dir` (and its parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(AddonError::io(format!("creating {}", dir.display())))
}

/// Creates `dir` (and its parents) so that services running as other users can pass through
/// it to their own directories below, without listing it (mode 0711); the data dir above it
/// gets the same traverse bit if it lacks it.
pub fn create_passable_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(AddonError::io(format!("creating {}", dir.display())))?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let meta =
            std::fs::metadata(d).map_err(AddonError::io(format!("reading {}", d.display())))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o711))
                .map_err(AddonError::io(format!("making {} passable", d.display())))?;
        }
    }
    // Above the data dir is the operator's: say what is wrong rather than change it.
    if crate::system::is_root() {
        let mut up = dir.parent().and_then(Path::parent);
        while let Some(d) = up {
            if let Ok(meta) = std::fs::metadata(d) {
                if meta.permissions().mode() & 0o001 == 0 {
                    return Err(AddonError::Service {
                        context: format!("preparing {}", dir.display()),
                        message: format!(
                            "add-on services run as users of their own, who cannot pass through {} (mode {:o}): allow it (chmod o+x {}) or choose a --data-dir they can reach",
                            d.display(),
                            meta.permissions().mode() & 0o7777,
                            d.display()
                        ),
                    });
                }
            }
            up = d.parent();
        }
    }
    Ok(())
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(AddonError::io(format!("writing {}", path.display())))?;
    f.write_all(bytes)
        .map_err(AddonError::io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_path_like_ids() {
        let dir = kiln_testkit::TempDir::new("addon-state");
        let s = StateDir::new(dir.join("redis"));
        assert_eq!(s.load::<u32>("a1").unwrap(), None);
        s.save("a1", &42u32).unwrap();
        assert_eq!(s.load::<u32>("a1").unwrap(), Some(42));
        assert_eq!(s.ids(), ["a1"]);
        for bad in ["", "../x", "a/b", ".", &"a".repeat(65)] {
            assert!(s.save(bad, &1u32).is_err(), "{bad:?}");
        }
        s.remove("a1").unwrap();
        s.remove("a1").unwrap();
        assert!(s.ids().is_empty());
    }
}
