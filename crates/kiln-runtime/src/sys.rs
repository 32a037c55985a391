//! Thin wrappers over the Linux calls the helper makes, each returning an error that names
//! what was being done. Used only by the single-threaded helper process.

use std::ffi::CString;
use std::io;
use std::path::Path;

pub type SysResult<T> = Result<T, SysError>;

/// A failed step of the helper: what it was doing, and the system's reason when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{what}{}", .source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
pub struct SysError {
    what: String,
    #[source]
    source: Option<io::Error>,
}

impl SysError {
    /// The last system call failed while doing `what`.
    pub fn last_os_error(what: impl Into<String>) -> SysError {
        SysError {
            what: what.into(),
            source: Some(io::Error::last_os_error()),
        }
    }

    /// `what` failed with `source`.
    /// An error number the kernel answered with (netlink's).
    pub fn os(what: impl Into<String>, errno: i32) -> SysError {
        SysError {
            what: what.into(),
            source: Some(io::Error::from_raw_os_error(errno)),
        }
    }

    pub fn io(what: impl Into<String>, source: io::Error) -> SysError {
        SysError {
            what: what.into(),
            source: Some(source),
        }
    }
}

/// A step that failed for a reason of the helper's own (no system error behind it).
impl From<String> for SysError {
    fn from(what: String) -> SysError {
        SysError { what, source: None }
    }
}

impl From<&str> for SysError {
    fn from(what: &str) -> SysError {
        SysError {
            what: what.to_string(),
            source: None,
        }
    }
}

pub fn cstr(s: &str) -> SysResult<CString> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte").into())
}

pub fn path_cstr(p: &Path) -> SysResult<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", p.display()).into())
}

fn check(ret: libc::c_int, what: impl FnOnce() -> String) -> SysResult<()> {
    if ret < 0 {
        Err(SysError::last_os_error(what()))
    } else {
        Ok(())
    }
}

pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let src_c = src.map(cstr).transpose()?;
    let target_c = path_cstr(target)?;
    let fs_c = fstype.map(cstr).transpose()?;
    let data_c = data.map(cstr).transpose()?;
    // SAFETY: all pointers are valid NUL-terminated strings or null, as mount(2) expects.
    let ret = unsafe {
        libc::mount(
            src_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            target_c.as_ptr(),
            fs_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    check(ret, || {
        format!(
            "mounting {} on {}",
            src.or(fstype).unwrap_or("-"),
            target.display()
        )
    })
}

/// Bind-mounts `src` on `target`, read-only unless `writable`; never allowing setuid or devices.
pub fn bind(src: &Path, target: &Path, writable: bool) -> SysResult<()> {
    let src_s = src
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", src.display()))?;
    mount(
        Some(src_s),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID | libc::MS_NODEV;
    if !writable {
        flags |= libc::MS_RDONLY;
    }
    mount(None, target, None, flags, None)
}

pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: plain syscall.
    check(unsafe { libc::unshare(flags) }, || "unshare".to_string())
}

pub fn pivot_to(new_root: &Path) -> SysResult<()> {
    let c = path_cstr(new_root)?;
    let dot = cstr(".")?;
    // SAFETY: valid C strings; pivot_root(".", ".") stacks the old root on top of the new
    // one, which is then detached, so no directory for the old root is needed.
    unsafe {
        check(libc::chdir(c.as_ptr()), || {
            format!("chdir {}", new_root.display())
        })?;
        check(
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int,
            || "pivot_root".to_string(),
        )?;
        check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH), || {
            "detaching the host's root".to_string()
        })?;
        let slash = cstr("/")?;
        check(libc::chdir(slash.as_ptr()), || "chdir /".to_string())?;
    }
    Ok(())
}

pub fn sethostname(name: &str) -> SysResult<()> {
    // SAFETY: pointer and length of a valid buffer.
    check(
        unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) },
        || "sethostname".to_string(),
    )
}

pub fn drop_privileges(uid: u32, gid: u32) -> SysResult<()> {
    // SAFETY: plain syscalls. Order matters: groups and gid while still root, uid last.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()), || {
            "setgroups".to_string()
        })?;
        check(libc::setresgid(gid, gid, gid), || {
            format!("setresgid {gid}")
        })?;
        check(libc::setresuid(uid, uid, uid), || {
            format!("setresuid {uid}")
        })?;
    }
    Ok(())
}

pub fn no_new_privs() -> SysResult<()> {
    // SAFETY: plain prctl.
    check(
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) },
        || "PR_SET_NO_NEW_PRIVS".to_string(),
    )
}

pub fn write_fd(fd: libc::c_int, msg: &str) {
    // SAFETY: writing a valid buffer; errors are ignored because this is the error path.
    unsafe {
        libc::write(fd, msg.as_ptr() as *const libc::c_void, msg.len());
    }
}
