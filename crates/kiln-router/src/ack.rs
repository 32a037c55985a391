//! Acknowledging a dyno's bytes at once whenever the router waits for the rest of a
//! response, so that no app's Nagle algorithm waits on the router's delayed ACK.
//!
//! # The stall
//!
//! Many app servers write a response in pieces with Nagle's algorithm left on: Python's
//! `http.server` in HTTP/1.1 mode writes the head, then the body; so do servers that flush
//! headers before the app produces its body. On a connection that has been used before,
//! Linux treats the router's side as interactive ("pingpong" mode: the router sent a request
//! shortly after receiving data), and in that mode it delays the ACK of the head by up to
//! 40 ms, hoping to piggyback it on data the router never sends, because the router is
//! waiting for the body. The app's kernel meanwhile holds the small body back until the head
//! is acknowledged (Nagle: one small segment in flight at a time). Each side waits for the
//! other until the delayed-ACK timer fires: **every request on a kept-alive dyno connection
//! took 44 ms** with such an app (measured: the stdlib app at 44.0 ms median per request on
//! one client connection, against 1.6 ms for the first request on a fresh connection, whose
//! first segments Linux acknowledges at once). Closing the connection after each request
//! (nginx's default towards upstreams, Heroku's `http-disable-keepalive-to-dyno`) hides the
//! stall but costs a connection per request, which is what keep-alive saves.
//!
//! # The fix
//!
//! `setsockopt(TCP_QUICKACK, 1)` on a socket with an ACK pending sends that ACK now and takes
//! the socket out of pingpong mode (`__tcp_sock_set_quickack` in Linux's `tcp.c`). Linux
//! puts the socket back into pingpong mode when the router next sends quickly after
//! receiving, so the option has to be re-armed; the router does it at exactly the moment
//! that matters: **when a read from a dyno would block after part of a response has
//! arrived**. Then the router has read everything the kernel holds (so the ACK covers it),
//! and it is about to wait for bytes that the app may be holding back for that ACK. A
//! response that arrives whole (nginx, most frameworks) never makes the router wait
//! mid-response, so it costs nothing; a response in pieces costs one system call per wait,
//! instead of 40 ms. With the fix the same app answers in about 1 ms per request, for
//! HTTP/1.1 and HTTP/2 clients alike, measured by the end-to-end test `nagle_app_is_not_delayed` and in
//! `bench/router` (bench/README.md, "realistic dynos").
//!
//! Other ways considered: a per-route `quickack 1` (`ip route ... quickack 1`) is
//! host-wide configuration Kiln should not impose on loopback; `TCP_QUICKACK` after every
//! read costs a system call per read on every response, including the ones that arrive
//! whole; turning delayed ACKs off is not possible per socket on Linux.

use tokio::net::TcpStream;

/// Sends the ACK for what the router has read from a dyno now instead of after Linux's
/// delayed-ACK timeout. Call it only when about to wait for more of a response that has
/// begun to arrive (see the module doc); a failure only loses the optimisation.
pub(crate) fn now(stream: &TcpStream) {
    let _ = stream.set_quickack(true);
}
