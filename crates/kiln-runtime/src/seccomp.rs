//! Hardening applied in the dyno's init before the command runs: capability sets emptied and
//! a seccomp filter that refuses the system calls a dyno has no business making (mounts, new
//! namespaces, kernel modules, ...). (Issue 3: being filled in.)

use crate::sys::SysResult;

/// Empties the capability bounding and ambient sets. Called while still root, before the
/// uid changes.
pub fn drop_capabilities() -> SysResult<()> {
    Ok(())
}

/// Installs the seccomp filter. Called after `no_new_privs`, just before the command is
/// forked, so init and the command both run under it.
pub fn apply_filter() -> SysResult<()> {
    Ok(())
}
