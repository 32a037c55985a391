//! Per-dyno cgroups (v1, v2 and hybrid hierarchies): resource limits and memory accounting.
//! (Issue 3: being filled in.)

use crate::DynoSpec;
use crate::sys::SysResult;

/// Called by the helper (still root, before it enters new namespaces): moves the helper into
/// the dyno's cgroups, so everything it starts is limited and accounted there.
pub fn join(_spec: &DynoSpec) -> SysResult<()> {
    Ok(())
}
