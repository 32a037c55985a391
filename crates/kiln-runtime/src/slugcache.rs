//! Unpacked slugs, shared by every dyno of this host.
//!
//! A slug is unpacked once per (slug, uid) into `slugs/<sha256>-<uid>/` and then mounted
//! read-only as the lower layer of each dyno's `/app`. Files belong to the app's uid so the
//! app can change them in its own overlay, as on Heroku. Unpacking goes to a temporary
//! directory that is renamed into place, so a crash never leaves a half-unpacked slug that
//! looks complete.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub struct SlugCache {
    dir: PathBuf,
    /// Serialises unpacking so two dynos starting at once unpack a slug only once.
    lock: Mutex<()>,
}

impl SlugCache {
    pub fn new(dir: PathBuf) -> SlugCache {
        SlugCache {
            dir,
            lock: Mutex::new(()),
        }
    }

    /// Returns the directory holding the unpacked slug, unpacking it first if needed.
    /// `checksum` is `SHA256:<hex>`; `tarball` a gzipped tar of the app's files.
    pub fn ensure(&self, checksum: &str, tarball: &Path, uid: Option<u32>) -> io::Result<PathBuf> {
        let hex = checksum.strip_prefix("SHA256:").unwrap_or(checksum);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid slug checksum {checksum:?}"),
            ));
        }
        let uid_v = uid.unwrap_or(0);
        let target = self.dir.join(format!("{hex}-{uid_v}"));
        if target.is_dir() {
            return Ok(target);
        }
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if target.is_dir() {
            return Ok(target);
        }
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&tmp)?;
        let result = unpack(tarball, &tmp, uid);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io::Error::new(
                e.kind(),
                format!("unpacking slug {checksum}: {e}"),
            ));
        }
        std::fs::rename(&tmp, &target)?;
        Ok(target)
    }

    /// Removes unpacked slugs not in `keep` (checksums) and leftovers of interrupted unpacks.
    pub fn prune(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hex = name.split('-').next().unwrap_or("");
            let wanted = keep
                .iter()
                .any(|c| c.strip_prefix("SHA256:").unwrap_or(c) == hex);
            if name.starts_with(".tmp-") || !wanted {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Unpacks a gzipped tarball into `dest`, refusing anything that would land outside it and
/// dropping setuid bits and device nodes.
pub fn unpack(tarball: &Path, dest: &Path, uid: Option<u32>) -> io::Result<()> {
    let f = std::fs::File::open(tarball)?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f)));
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    for entry in ar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        // No setuid/setgid bits survive into a dyno.
        entry.set_mask(0o6000);
        // unpack_in refuses absolute paths and `..`; a `false` means it skipped the entry.
        let path = entry.path()?.into_owned();
        if !entry.unpack_in(dest)? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("slug entry {} escapes the slug", path.display()),
            ));
        }
    }
    if let Some(uid) = uid {
        chown_tree(dest, uid)?;
    }
    Ok(())
}

fn chown_tree(dir: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let ft = e.file_type()?;
        if ft.is_dir() {
            chown_tree(&e.path(), uid)?;
        } else {
            std::os::unix::fs::lchown(e.path(), Some(uid), Some(uid))?;
        }
    }
    Ok(())
}
