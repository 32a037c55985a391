//! Just enough rtnetlink to give a dyno its network: a veth pair, addresses, links up, a
//! default route. Used by the dyno helper, which is single-threaded and must not fork `ip`
//! three times per dyno (each exec costs milliseconds; the whole dyno start costs about ten).
//!
//! Messages are built by hand: a `nlmsghdr`, the family header (`ifinfomsg`, `ifaddrmsg` or
//! `rtmsg`), then attributes (`nlattr`: length, type, payload padded to 4 bytes). Every
//! request asks for an acknowledgement, so each call returns the kernel's own error.

use crate::sys::{SysError, SysResult};
use std::net::Ipv4Addr;

const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_GATEWAY: u16 = 5;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink route socket, bound to the network namespace it was opened in.
pub struct Netlink {
    fd: libc::c_int,
    seq: u32,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // SAFETY: closing the socket we opened.
        unsafe {
            libc::close(self.fd);
        }
    }
}

/// A message under construction.
struct Msg(Vec<u8>);

impl Msg {
    fn new(kind: u16, flags: u16, header: &[u8]) -> Msg {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&kind.to_ne_bytes());
        b[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        b.extend_from_slice(header);
        Msg(b)
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Msg {
        let len = 4 + payload.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.pad();
        self
    }

    /// Opens a nested attribute; returns where its length goes.
    fn begin(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }
}

fn name_attr(name: &str) -> Vec<u8> {
    let mut v = name.as_bytes().to_vec();
    v.push(0);
    v
}

/// `ifinfomsg`: family, type, index, flags, change.
fn ifinfo(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0] = libc::AF_UNSPEC as u8;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

impl Netlink {
    /// A route socket in the calling thread's current network namespace.
    pub fn open() -> SysResult<Netlink> {
        // SAFETY: socket/bind with a zeroed sockaddr_nl of the right size.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(SysError::last_os_error("socket(NETLINK_ROUTE)"));
            }
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            if libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            ) < 0
            {
                let e = SysError::last_os_error("bind(netlink)");
                libc::close(fd);
                return Err(e);
            }
            Ok(Netlink { fd, seq: 0 })
        }
    }

    /// Sends one request and waits for its acknowledgement.
    fn call(&mut self, mut msg: Msg, what: &str) -> SysResult<()> {
        let flags = u16::from_ne_bytes([msg.0[6], msg.0[7]]) | NLM_F_ACK;
        msg.0[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.exchange(msg, what).map(|_| ())
    }

    /// Sends one request; returns the first answer that is not an acknowledgement (`None`
    /// for a bare acknowledgement), or the kernel's error.
    fn exchange(&mut self, mut msg: Msg, what: &str) -> SysResult<Option<Vec<u8>>> {
        self.seq += 1;
        let len = msg.0.len() as u32;
        msg.0[0..4].copy_from_slice(&len.to_ne_bytes());
        msg.0[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // SAFETY: send/recv on our socket with buffers we own.
        unsafe {
            if libc::send(
                self.fd,
                msg.0.as_ptr() as *const libc::c_void,
                msg.0.len(),
                0,
            ) < 0
            {
                return Err(SysError::last_os_error(what));
            }
            let mut buf = [0u8; 4096];
            loop {
                let n = libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
                if n < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(SysError::last_os_error(what));
                }
                let n = n as usize;
                let mut off = 0;
                while off + 16 <= n {
                    let mlen =
                        u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                    let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                    let seq =
                        u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or([0; 4]));
                    if mlen < 16 || off + mlen > n {
                        return Err(format!("{what}: a malformed netlink answer").into());
                    }
                    if kind == NLMSG_ERROR && seq == self.seq && mlen >= 20 {
                        let errno = i32::from_ne_bytes(
                            buf[off + 16..off + 20].try_into().unwrap_or([0; 4]),
                        );
                        if errno == 0 {
                            return Ok(None);
                        }
                        return Err(SysError::os(what, -errno));
                    }
                    if seq == self.seq && kind != NLMSG_ERROR {
                        return Ok(Some(buf[off + 16..off + mlen].to_vec()));
                    }
                    off += (mlen + 3) & !3;
                }
            }
        }
    }

    /// A veth pair: `host` in this socket's namespace, `peer` made directly in the namespace
    /// `netns_fd`. Made there rather than moved there: moving a link between namespaces waits
    /// for an RCU grace period (about 20 ms here, twice a whole dyno start); making it in place
    /// does not.
    pub fn create_veth_into(
        &mut self,
        host: &str,
        peer: &str,
        netns_fd: libc::c_int,
    ) -> SysResult<()> {
        let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfo(0, 0, 0));
        m.attr(IFLA_IFNAME, &name_attr(host));
        let info = m.begin(IFLA_LINKINFO);
        m.attr(IFLA_INFO_KIND, b"veth");
        let data = m.begin(IFLA_INFO_DATA);
        let p = m.begin(VETH_INFO_PEER);
        m.raw(&ifinfo(0, 0, 0));
        m.attr(IFLA_IFNAME, &name_attr(peer));
        m.attr(IFLA_NET_NS_FD, &(netns_fd as u32).to_ne_bytes());
        m.end(p);
        m.end(data);
        m.end(info);
        self.call(m, &format!("creating the veth pair {host}"))
    }

    /// The index of a link in this socket's namespace (whatever namespace the calling
    /// thread is in now).
    pub fn index(&mut self, name: &str) -> SysResult<i32> {
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfo(0, 0, 0));
        m.attr(IFLA_IFNAME, &name_attr(name));
        let what = format!("finding the link {name}");
        match self.exchange(m, &what)? {
            Some(reply) if reply.len() >= 8 => {
                Ok(i32::from_ne_bytes(reply[4..8].try_into().unwrap_or([0; 4])))
            }
            _ => Err(what.into()),
        }
    }

    pub fn delete_link(&mut self, index: i32) -> SysResult<()> {
        self.call(
            Msg::new(RTM_DELLINK, 0, &ifinfo(index, 0, 0)),
            "deleting a link",
        )
    }

    pub fn link_up(&mut self, index: i32) -> SysResult<()> {
        let up = libc::IFF_UP as u32;
        self.call(
            Msg::new(RTM_NEWLINK, 0, &ifinfo(index, up, up)),
            "bringing a link up",
        )
    }

    pub fn add_address(&mut self, index: i32, addr: Ipv4Addr, prefix: u8) -> SysResult<()> {
        let mut h = [0u8; 8];
        h[0] = libc::AF_INET as u8;
        h[1] = prefix;
        h[4..8].copy_from_slice(&(index as u32).to_ne_bytes());
        let mut m = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(IFA_LOCAL, &addr.octets());
        m.attr(IFA_ADDRESS, &addr.octets());
        self.call(m, &format!("adding the address {addr}"))
    }

    /// `default via gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> SysResult<()> {
        let h = [
            libc::AF_INET as u8,
            0, // dst_len: the default route
            0,
            0,
            libc::RT_TABLE_MAIN,
            libc::RTPROT_BOOT,
            libc::RT_SCOPE_UNIVERSE,
            libc::RTN_UNICAST,
            0,
            0,
            0,
            0,
        ];
        let mut m = Msg::new(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &h);
        m.attr(RTA_GATEWAY, &gateway.octets());
        self.call(m, "adding the default route")
    }
}

/// The index of a link in the calling thread's namespace.
pub fn index_of(name: &str) -> SysResult<i32> {
    let c = std::ffi::CString::new(name).map_err(|_| SysError::from("a link name with NUL"))?;
    // SAFETY: a valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(SysError::last_os_error(&format!("finding the link {name}")))
    } else {
        Ok(i as i32)
    }
}
