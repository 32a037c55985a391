//! Header maps kept for reuse on the worker thread.
//!
//! Every proxied request makes two `HeaderMap`s (the client's request and the dyno's
//! response), and each is two allocations that are freed again when the request ends:
//! about a twentieth of the router's work per request (bench/README.md, session 17). A
//! worker serves one request after another on its own thread, so the maps of the request
//! that just ended are kept, emptied, for the next one. Keeping them per thread needs no
//! lock, and a map never crosses threads by this route.
//!
//! Only small maps are kept: one sized by a client's thousand fields stays with the request
//! that brought it.

use http::HeaderMap;
use std::cell::RefCell;

/// How many maps a thread keeps: a few per request a worker has in flight at once.
const KEEP: usize = 64;
/// Larger maps are freed rather than kept.
const MAX_CAPACITY: usize = 32;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `fields` fields: a kept one when the thread has one.
pub(crate) fn take(fields: usize) -> HeaderMap {
    // `try_with`: never a panic, even while the thread's storage is being torn down.
    let kept = SPARE
        .try_with(|spare| spare.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten();
    match kept {
        Some(mut map) => {
            map.reserve(fields);
            map
        }
        None => HeaderMap::with_capacity(fields),
    }
}

/// Gives a map back for reuse; its fields are dropped now.
pub(crate) fn give(mut map: HeaderMap) {
    // `capacity` is the room for names; `len` counts every value, so a map that grew room
    // for many repeated values (a long run of `Set-Cookie`, say) is not kept either.
    if map.capacity() == 0 || map.capacity() > MAX_CAPACITY || map.len() > MAX_CAPACITY {
        return;
    }
    map.clear();
    let _ = SPARE.try_with(|spare| {
        if let Ok(mut spare) = spare.try_borrow_mut() {
            if spare.len() < KEEP {
                spare.push(map);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{self, HeaderValue};

    #[test]
    fn a_given_map_comes_back_empty_with_its_room() {
        let mut map = take(4);
        map.insert(header::HOST, HeaderValue::from_static("a"));
        map.append(header::ACCEPT, HeaderValue::from_static("b"));
        let room = map.capacity();
        give(map);
        let again = take(2);
        assert!(again.is_empty(), "a kept map is handed out empty");
        assert_eq!(again.capacity(), room, "the kept map, not a new one");
    }

    #[test]
    fn large_maps_are_not_kept() {
        let mut big = HeaderMap::with_capacity(500);
        big.insert(header::HOST, HeaderValue::from_static("a"));
        give(big);
        let next = take(1);
        assert!(next.capacity() < 500);
    }

    #[test]
    fn the_thread_keeps_a_bounded_number() {
        for _ in 0..KEEP * 2 {
            give(HeaderMap::with_capacity(4));
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), KEEP);
    }
}
