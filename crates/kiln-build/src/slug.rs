//! Slug packing: the build directory becomes a gzipped tarball named by its SHA-256
//! (`slugs/<hex>.tgz`), written to a temporary file and renamed, so the slug store only ever
//! holds complete slugs.

use sha2::{Digest, Sha256};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Heroku's historical hard limit on compressed slug size.
pub const MAX_SLUG_BYTES: u64 = 500 * 1024 * 1024;

pub struct PackedSlug {
    /// `SHA256:<hex>`
    pub checksum: String,
    pub size: u64,
    pub path: PathBuf,
}

/// Hashes everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        if self.written > MAX_SLUG_BYTES {
            return Err(io::Error::other(format!("the compressed slug is larger than {} MB", MAX_SLUG_BYTES / 1024 / 1024)));
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packs `dir` into the slug store `slugs_dir`.
pub fn pack(dir: &Path, slugs_dir: &Path) -> io::Result<PackedSlug> {
    std::fs::create_dir_all(slugs_dir)?;
    let tmp = slugs_dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let hw = HashingWriter { inner: io::BufWriter::new(file), hasher: Sha256::new(), written: 0 };
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
            std::fs::rename(&tmp, &path)?;
            Ok(PackedSlug { checksum: format!("SHA256:{hex}"), size, path })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Where a slug with this checksum lives in the store.
pub fn path_for(slugs_dir: &Path, checksum: &str) -> PathBuf {
    slugs_dir.join(format!("{}.tgz", checksum.strip_prefix("SHA256:").unwrap_or(checksum)))
}
