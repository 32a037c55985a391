//! Slug packing: the build directory becomes a gzipped tarball named by its SHA-256
//! (`slugs/<hex>.tgz`), written to a temporary file and renamed, so the slug store only ever
//! holds complete slugs.

use sha2::{Digest, Sha256};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a slug could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the compressed slug is larger than {} MB", .limit / (1024 * 1024))]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

pub struct PackedSlug {
    /// `SHA256:<hex>`
    pub checksum: String,
    pub size: u64,
    pub path: PathBuf,
}

/// Hashes everything written through it.
struct HashingWriter<'a, W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
    limit: u64,
    /// Set once the limit is passed: what made the write fail, told apart from a disk error.
    over: &'a std::cell::Cell<bool>,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        if self.written > self.limit {
            self.over.set(true);
            return Err(io::Error::other("the slug is over its size limit"));
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `dir` into the slug store `slugs_dir`, refusing a slug over `max_bytes` compressed
/// (found while packing: it streams to disk, and stops when it passes the limit).
pub fn pack(dir: &Path, slugs_dir: &Path, max_bytes: u64) -> Result<PackedSlug, PackError> {
    std::fs::create_dir_all(slugs_dir)?;
    let tmp = slugs_dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let over = std::cell::Cell::new(false);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let hw = HashingWriter {
            inner: io::BufWriter::new(file),
            hasher: Sha256::new(),
            written: 0,
            limit: max_bytes,
            over: &over,
        };
        let gz = flate2::write::GzEncoder::new(hw, flate2::Compression::fast());
        let mut ar = tar::Builder::new(gz);
        ar.mode(tar::HeaderMode::Deterministic);
        ar.follow_symlinks(false);
        ar.append_dir_all(".", dir)?;
        let gz = ar.into_inner()?;
        let mut hw = gz.finish()?;
        hw.flush()?;
        let hex = format!("{:x}", hw.hasher.finalize());
        Ok::<_, io::Error>((hex, hw.written))
    })();
    match result {
        Ok((hex, size)) => {
            let path = slugs_dir.join(format!("{hex}.tgz"));
            std::fs::rename(&tmp, &path).map_err(PackError::Io)?;
            Ok(PackedSlug {
                checksum: format!("SHA256:{hex}"),
                size,
                path,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(if over.get() {
                PackError::TooLarge { limit: max_bytes }
            } else {
                PackError::Io(e)
            })
        }
    }
}

/// Where a slug with this checksum lives in the store.
pub fn path_for(slugs_dir: &Path, checksum: &str) -> PathBuf {
    slugs_dir.join(format!(
        "{}.tgz",
        checksum.strip_prefix("SHA256:").unwrap_or(checksum)
    ))
}
