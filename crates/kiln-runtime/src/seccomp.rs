//! Hardening applied in the dyno's init before the command runs: capability sets emptied and
//! a seccomp filter that refuses the system calls a dyno has no business making.
//!
//! A dyno runs as its app's unprivileged uid, so most of what is denied here would fail on
//! permissions anyway. The filter is the second wall: it shrinks the kernel surface that
//! untrusted code can reach at all, which matters because the interesting kernel bugs sit
//! behind exactly these calls (user namespaces, eBPF, the new mount API, userfaultfd, ...),
//! and some of them need no privilege to reach.
//!
//! The filter is a deny list (everything else is allowed) so that Python, Node, bash, pip and
//! npm behave as on a plain host. Denied calls fail with an errno the program can handle
//! (`EPERM`, or `ENOSYS` where libc falls back to an older call); only system calls made
//! through a foreign ABI (e.g. 32-bit `int 0x80` on x86-64, which would otherwise reach the
//! kernel under different numbers and skip every rule) kill the process.
//!
//! The program is hand-written classic BPF. Its shape is kept simple enough for the kernel's
//! seccomp action cache (Linux 5.11+), which then lets every plainly allowed system call skip
//! the filter altogether: check the architecture, load the number, a flat list of
//! `jeq nr` → verdict, allow.

use crate::sys::SysResult;
use std::io;

/// `AUDIT_ARCH_*` from `<linux/audit.h>` (not in the libc crate).
pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
pub const AUDIT_ARCH_AARCH64: u32 = 0xC000_00B7;

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: Option<u32> = Some(AUDIT_ARCH_X86_64);
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: Option<u32> = Some(AUDIT_ARCH_AARCH64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: Option<u32> = None;

/// On x86-64, system call numbers with this bit set are the x32 ABI: same audit arch, other
/// numbering. Refused wholesale so the rules below cannot be side-stepped through it.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

/// Every `CLONE_NEW*` flag that `clone(2)` accepts (CLONE_NEWTIME, 0x80, only exists for
/// `clone3`/`unshare`: in `clone`'s flags that bit is part of the exit signal).
pub const CLONE_NEW_MASK: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// `personality(2)` values a dyno may set: Linux, 32-bit uname (`linux32`), `UNAME26`, and
/// the query `0xffffffff`. Everything else, notably `ADDR_NO_RANDOMIZE` (turns ASLR off for
/// what the process execs next) and `READ_IMPLIES_EXEC`, is refused. The same list as
/// Docker's default profile.
pub const PERSONALITY_ALLOWED: [u32; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// What the filter does with one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Fail with this errno.
    Deny(i32),
    /// `clone`: fail with `EPERM` when the flags (arg0) ask for any new namespace.
    CloneWithoutNamespaces,
    /// `personality`: allow only [`PERSONALITY_ALLOWED`], otherwise `EPERM`.
    SafePersonality,
}

fn nr(n: libc::c_long) -> u32 {
    n as u32
}

/// The denied system calls, grouped by why.
pub fn rules() -> Vec<(u32, Rule)> {
    use Rule::*;
    let eperm = Deny(libc::EPERM);
    let mut rules = Vec::new();
    let mut deny =
        |nums: &[libc::c_long], rule: Rule| rules.extend(nums.iter().map(|n| (nr(*n), rule)));

    // Filesystem namespace: the dyno's root is built once by the helper; changing it (mounts,
    // a new root, the new fd-based mount API) is how a container escapes or hides from its
    // own read-only stack.
    deny(
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
        ],
        eperm,
    );
    // New namespaces, and joining others: user namespaces hand an unprivileged process a full
    // capability set over fresh namespaces, the largest unprivileged kernel attack surface
    // there is; setns would join someone else's namespaces given an fd.
    deny(&[libc::SYS_unshare, libc::SYS_setns], eperm);
    deny(&[libc::SYS_clone], CloneWithoutNamespaces);
    // clone3 passes its flags in a struct that seccomp cannot read, so it is refused as if
    // the kernel lacked it: glibc (pthread_create, posix_spawn) then falls back to clone,
    // whose flags the rule above does inspect.
    deny(&[libc::SYS_clone3], Deny(libc::ENOSYS));
    // The kernel itself: modules, replacing the running kernel, rebooting, swap, process
    // accounting, quotas, the kernel log.
    deny(
        &[
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_reboot,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_acct,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_syslog,
        ],
        eperm,
    );
    // Kernel attack surface with a record of privilege escalations and cross-tenant leaks:
    // eBPF, the kernel keyring (shared per uid, not per container), perf events (side
    // channels, many CVEs), userfaultfd (stalls kernel threads at will: the usual race
    // widener in exploits), lookup_dcookie (kernel profiling).
    deny(
        &[
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_lookup_dcookie,
        ],
        eperm,
    );
    // File handles bypass path lookup, and so the dyno's root: open_by_handle_at is the
    // "shocker" container escape.
    deny(
        &[libc::SYS_open_by_handle_at, libc::SYS_name_to_handle_at],
        eperm,
    );
    // Raw I/O port access (x86 only).
    #[cfg(target_arch = "x86_64")]
    deny(&[libc::SYS_iopl, libc::SYS_ioperm], eperm);
    // Execution domains that weaken the process (ASLR off, readable implies executable).
    deny(&[libc::SYS_personality], SafePersonality);
    rules
}

// Classic BPF helpers (`BPF_STMT` / `BPF_JUMP` from <linux/filter.h>).
fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const LD_ABS: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
const JGE: u32 = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
const JSET: u32 = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
const RET: u32 = libc::BPF_RET | libc::BPF_K;

/// Offsets into `struct seccomp_data`: nr (u32), arch (u32), instruction pointer (u64),
/// args (6 × u64). Arguments are read by their low 32 bits, which come first on the
/// little-endian machines this builds for (and are all that `clone` and `personality` use).
pub const OFF_NR: u32 = 0;
pub const OFF_ARCH: u32 = 4;
pub const OFF_ARG0_LO: u32 = 16;

pub fn ret_errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// Builds the filter for an architecture (`AUDIT_ARCH_*`), with an optional x32-style bit
/// that marks foreign numbers, from [`rules`].
pub fn build_program(
    arch: u32,
    foreign_nr_bit: Option<u32>,
    rules: &[(u32, Rule)],
) -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(LD_ABS, OFF_ARCH),
        jump(JEQ, arch, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_ABS, OFF_NR),
    ];
    if let Some(bit) = foreign_nr_bit {
        p.push(jump(JGE, bit, 0, 1));
        p.push(stmt(RET, ret_errno(libc::ENOSYS)));
    }
    for &(nr, rule) in rules {
        match rule {
            Rule::Deny(errno) => {
                p.push(jump(JEQ, nr, 0, 1));
                p.push(stmt(RET, ret_errno(errno)));
            }
            Rule::CloneWithoutNamespaces => {
                p.push(jump(JEQ, nr, 0, 4));
                p.push(stmt(LD_ABS, OFF_ARG0_LO));
                p.push(jump(JSET, CLONE_NEW_MASK, 0, 1));
                p.push(stmt(RET, ret_errno(libc::EPERM)));
                p.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
            }
            Rule::SafePersonality => {
                let n = PERSONALITY_ALLOWED.len();
                p.push(jump(JEQ, nr, 0, (n + 3) as u8));
                p.push(stmt(LD_ABS, OFF_ARG0_LO));
                for (i, v) in PERSONALITY_ALLOWED.iter().enumerate() {
                    // On a match, jump over the remaining compares and the EPERM.
                    p.push(jump(JEQ, *v, (n - i) as u8, 0));
                }
                p.push(stmt(RET, ret_errno(libc::EPERM)));
                p.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
            }
        }
    }
    p.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    p
}

/// The filter for the architecture this binary runs on.
pub fn native_program() -> SysResult<Vec<libc::sock_filter>> {
    let arch = NATIVE_ARCH.ok_or("seccomp: no filter for this architecture")?;
    Ok(build_program(arch, X32_SYSCALL_BIT, &rules()))
}

fn last_os_error(what: &str) -> crate::sys::SysError {
    crate::sys::SysError::last_os_error(what)
}

/// The highest capability number this kernel knows.
fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Empties the capability bounding, ambient and inheritable sets. Called while still root,
/// before the uid changes: the effective set still holds CAP_SETUID/CAP_SETGID for that, and
/// the uid change then clears the permitted and effective sets. With the bounding and
/// inheritable sets empty, nothing the dyno execs can regain a capability, not even a setuid
/// binary or a dyno that runs as uid 0.
pub fn drop_capabilities() -> SysResult<()> {
    let last = cap_last_cap();
    for cap in 0..=last {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            let err = io::Error::last_os_error();
            // A kernel older than the number read (or a guessed 63) says EINVAL: done.
            if err.raw_os_error() == Some(libc::EINVAL) && cap > 0 {
                break;
            }
            return Err(format!("dropping capability {cap} from the bounding set: {err}").into());
        }
    }
    // SAFETY: plain prctl.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    } < 0
    {
        return Err(last_os_error("clearing the ambient capabilities"));
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as capget/capset expect for version 3.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        ) < 0
        {
            return Err(last_os_error("capget"));
        }
        for d in &mut data {
            d.inheritable = 0;
        }
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) < 0
        {
            return Err(last_os_error("clearing the inheritable capabilities"));
        }
    }
    Ok(())
}

/// Installs a filter. The caller must have set `no_new_privs` (or hold CAP_SYS_ADMIN).
/// Async-signal-safe: no allocation, so it may run between fork and exec.
pub fn install(program: &[libc::sock_filter]) -> SysResult<()> {
    let len = u16::try_from(program.len()).map_err(|_| "seccomp: filter too long".to_string())?;
    let prog = libc::sock_fprog {
        len,
        filter: program.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prog points at `len` valid instructions that outlive the call (the kernel
    // copies them).
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(last_os_error("installing the seccomp filter"));
    }
    Ok(())
}

/// Installs the seccomp filter. Called after `no_new_privs`, just before the command is
/// forked, so init and the command both run under it.
pub fn apply_filter() -> SysResult<()> {
    install(&native_program()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions the filter uses, run on a synthetic
    /// `seccomp_data`: checks what the program decides, not just how it looks.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let ins = prog[pc];
            let code = ins.code as u32;
            pc += 1;
            match code {
                c if c == LD_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                c if c == RET => return ins.k,
                c if c == JEQ || c == JGE || c == JSET => {
                    let taken = match c {
                        _ if c == JEQ => acc == ins.k,
                        _ if c == JGE => acc >= ins.k,
                        _ => acc & ins.k != 0,
                    };
                    pc += if taken {
                        ins.jt as usize
                    } else {
                        ins.jf as usize
                    };
                }
                other => panic!("unexpected instruction {other:#x}"),
            }
            assert!(pc < prog.len(), "ran off the end of the program");
        }
        panic!("no verdict");
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn native() -> (Vec<libc::sock_filter>, u32) {
        (native_program().unwrap(), NATIVE_ARCH.unwrap())
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_in_allow() {
        let (p, _) = native();
        assert!(p.len() < 200, "{} instructions", p.len());
        for (i, ins) in p.iter().enumerate() {
            if ins.code as u32 & 0x07 == libc::BPF_JMP {
                assert!(
                    i + 1 + (ins.jt as usize) < p.len() && i + 1 + (ins.jf as usize) < p.len(),
                    "jump at {i} leaves the program"
                );
            }
        }
        assert_eq!(p.last().unwrap().code as u32, RET);
        assert_eq!(p.last().unwrap().k, ALLOW);
    }

    #[test]
    fn ordinary_system_calls_are_allowed() {
        let (p, arch) = native();
        for n in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_mmap,
            libc::SYS_socket,
            libc::SYS_ptrace,
            libc::SYS_kill,
            libc::SYS_exit_group,
            libc::SYS_setresuid,
            libc::SYS_wait4,
        ] {
            assert_eq!(run(&p, arch, nr(n), 0), ALLOW, "syscall {n}");
        }
    }

    #[test]
    fn every_listed_call_is_denied_with_its_errno() {
        let (p, arch) = native();
        let names = [
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_bpf,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_open_by_handle_at,
            libc::SYS_name_to_handle_at,
            libc::SYS_userfaultfd,
            libc::SYS_swapon,
            libc::SYS_swapoff,
            libc::SYS_reboot,
            libc::SYS_acct,
            libc::SYS_quotactl,
            libc::SYS_syslog,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_move_mount,
            libc::SYS_open_tree,
            libc::SYS_mount_setattr,
            libc::SYS_perf_event_open,
            libc::SYS_lookup_dcookie,
        ];
        for n in names {
            assert_eq!(
                run(&p, arch, nr(n), 0),
                ret_errno(libc::EPERM),
                "syscall {n}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        for n in [libc::SYS_iopl, libc::SYS_ioperm] {
            assert_eq!(
                run(&p, arch, nr(n), 0),
                ret_errno(libc::EPERM),
                "syscall {n}"
            );
        }
        assert_eq!(
            run(&p, arch, nr(libc::SYS_clone3), 0),
            ret_errno(libc::ENOSYS)
        );
    }

    #[test]
    fn clone_is_refused_only_with_namespace_flags() {
        let (p, arch) = native();
        let clone = nr(libc::SYS_clone);
        // What glibc passes for fork() and for a thread.
        let fork_flags =
            (libc::CLONE_CHILD_SETTID | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as u64;
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(run(&p, arch, clone, fork_flags), ALLOW);
        assert_eq!(run(&p, arch, clone, thread_flags), ALLOW);
        // An exit signal in the low byte that shares CLONE_NEWTIME's bit is fine.
        assert_eq!(run(&p, arch, clone, 0x80 | libc::SIGCHLD as u64), ALLOW);
        for flag in [
            libc::CLONE_NEWNS,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWUTS,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
        ] {
            assert_eq!(
                run(&p, arch, clone, fork_flags | flag as u64),
                ret_errno(libc::EPERM),
                "flag {flag:#x}"
            );
        }
    }

    #[test]
    fn personality_allows_only_the_harmless_domains() {
        let (p, arch) = native();
        let n = nr(libc::SYS_personality);
        for v in PERSONALITY_ALLOWED {
            assert_eq!(run(&p, arch, n, v as u64), ALLOW, "{v:#x}");
        }
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC.
        for v in [0x0040000u64, 0x0400000] {
            assert_eq!(run(&p, arch, n, v), ret_errno(libc::EPERM), "{v:#x}");
        }
    }

    #[test]
    fn foreign_architectures_are_killed() {
        let (p, _) = native();
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        const AUDIT_ARCH_ARM: u32 = 0x4000_0028;
        for arch in [
            AUDIT_ARCH_I386,
            AUDIT_ARCH_ARM,
            AUDIT_ARCH_X86_64 ^ AUDIT_ARCH_AARCH64 ^ NATIVE_ARCH.unwrap(),
        ] {
            assert_eq!(
                run(&p, arch, nr(libc::SYS_read), 0),
                libc::SECCOMP_RET_KILL_PROCESS,
                "arch {arch:#x}"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_refused() {
        let (p, arch) = native();
        assert_eq!(
            run(&p, arch, 0x4000_0000 | nr(libc::SYS_mount), 0),
            ret_errno(libc::ENOSYS)
        );
        assert_eq!(
            run(&p, arch, 0x4000_0000 | nr(libc::SYS_read), 0),
            ret_errno(libc::ENOSYS)
        );
    }

    #[test]
    fn the_aarch64_program_is_built_from_the_same_rules() {
        let p = build_program(AUDIT_ARCH_AARCH64, None, &[(40, Rule::Deny(libc::EPERM))]);
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 40, 0), ret_errno(libc::EPERM));
        assert_eq!(run(&p, AUDIT_ARCH_AARCH64, 63, 0), ALLOW);
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, 63, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    /// The real kernel, in a forked child: the filter installs, ordinary calls work, denied
    /// ones fail with the right errno. Everything is prepared before fork; the child only
    /// makes system calls and `_exit`s with a code naming the first failed check.
    #[test]
    fn the_kernel_accepts_the_filter_and_enforces_it() {
        let prog = native_program().unwrap();
        let ns_user = libc::CLONE_NEWUSER;
        // SAFETY: the child makes only async-signal-safe calls and never returns.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: plain system calls in a single-threaded child.
            unsafe {
                let errno = || *libc::__errno_location();
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
                    libc::_exit(10);
                }
                if install(&prog).is_err() {
                    libc::_exit(11);
                }
                if libc::getpid() <= 0 {
                    libc::_exit(12);
                }
                if libc::unshare(ns_user) == 0 || errno() != libc::EPERM {
                    libc::_exit(13);
                }
                if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) == 0
                    || errno() != libc::ENOSYS
                {
                    libc::_exit(14);
                }
                let (none, target) = (c"none".as_ptr(), c"/nonexistent-kiln-seccomp-test".as_ptr());
                if libc::mount(none, target, c"tmpfs".as_ptr(), 0, std::ptr::null()) == 0
                    || errno() != libc::EPERM
                {
                    libc::_exit(15);
                }
                if libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong,
                    0,
                    0,
                    0,
                    0,
                ) == 0
                {
                    libc::_exit(0); // the impossible child
                }
                if errno() != libc::EPERM {
                    libc::_exit(16);
                }
                // fork() (clone without namespace flags) still works.
                let c = libc::fork();
                if c == 0 {
                    libc::_exit(42);
                }
                let mut st = 0;
                if c < 0
                    || libc::waitpid(c, &mut st, 0) != c
                    || !libc::WIFEXITED(st)
                    || libc::WEXITSTATUS(st) != 42
                {
                    libc::_exit(17);
                }
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "check {} failed in the filtered child",
            libc::WEXITSTATUS(status)
        );
    }
}
