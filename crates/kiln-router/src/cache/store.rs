//! The store: objects by key and variant in bounded memory (LRU), fetches in flight for
//! coalescing, and purges when an app's release changes.

use super::*;

/// A stored response.
pub(crate) struct Object {
    pub(super) key: Key,
    pub(super) status: StatusCode,
    pub(super) plain: Variant,
    /// The gzip copy, for clients that take it, when it is smaller.
    pub(super) gzip: Option<Variant>,
    /// Whether the heads have a `Date`.
    pub(super) has_date: bool,
    pub(super) vary: Vec<(HeaderName, VaryValue)>,
    pub(super) shared_with_auth: bool,
    pub(super) lifetime: u64,
    pub(super) initial_age: u64,
    pub(super) stored_at: Instant,
    pub(super) size: usize,
}

/// One body a hit may send, with the head it is sent with.
pub(crate) struct Variant {
    pub(super) body: Bytes,
    /// `Content-Length`, `X-Cache` and an `Age` to overwrite are already in, so a hit that
    /// changes the head (`HEAD`, a 304, a stored 204) clones the map and changes one value.
    pub(super) headers: HeaderMap,
    /// The same head as written lines, without `Age` and framing: a plain hit (a body to
    /// send) is written from these, not from a copy of the map.
    pub(super) lines: Bytes,
}

impl Variant {
    pub(super) fn new(body: Bytes, headers: HeaderMap) -> Variant {
        let lines = crate::passthrough::write_lines(&headers);
        Variant {
            body,
            headers,
            lines,
        }
    }

    /// The bytes it is charged for: its body, and its head both as a map and as lines.
    pub(super) fn size(&self) -> usize {
        let map: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        self.body.len() + map + self.lines.len()
    }
}

impl Object {
    /// `current_age` of RFC 9111 §4.2.3, in whole seconds.
    pub(super) fn age(&self, now: Instant) -> u64 {
        self.initial_age + now.saturating_duration_since(self.stored_at).as_secs()
    }

    pub(super) fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.lifetime
    }

    pub(super) fn vary_matches(&self, req: RequestFields<'_>) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| value.matches(req, name))
    }
}

/// The primary cache key.
pub(super) struct Key {
    pub(super) app_id: Box<str>,
    /// Lowercase.
    pub(super) host: Box<[u8]>,
    pub(super) target: Box<str>,
}

impl Key {
    pub(super) fn size(&self) -> usize {
        self.app_id.len() + self.host.len() + self.target.len()
    }
}

/// A key as a request presents it, borrowed.
pub(super) struct KeyRef<'a> {
    pub(super) app_id: &'a str,
    pub(super) host: &'a [u8],
    pub(super) target: &'a str,
}

impl KeyRef<'_> {
    pub(super) fn matches(&self, key: &Key) -> bool {
        *key.app_id == *self.app_id
            && key.host.eq_ignore_ascii_case(self.host)
            && *key.target == *self.target
    }

    pub(super) fn to_key(&self) -> Key {
        Key {
            app_id: self.app_id.into(),
            host: self.host.to_ascii_lowercase().into_boxed_slice(),
            target: self.target.into(),
        }
    }
}

pub(super) enum Entry {
    Object(Arc<Object>),
    /// Hit-for-miss: requests for the key go straight to a dyno without coalescing.
    Pass {
        key: Key,
        until: Instant,
    },
}

impl Entry {
    pub(super) fn key(&self) -> &Key {
        match self {
            Entry::Object(o) => &o.key,
            Entry::Pass { key, .. } => key,
        }
    }

    pub(super) fn size(&self) -> usize {
        match self {
            Entry::Object(o) => o.size,
            Entry::Pass { key, .. } => OBJECT_OVERHEAD + key.size(),
        }
    }
}

pub(super) const NIL: u32 = u32::MAX;

/// One place in the LRU list.
pub(super) struct Slot {
    pub(super) prev: u32,
    pub(super) next: u32,
    pub(super) hash: u64,
    pub(super) entry: Option<Entry>,
}

/// A fetch others may wait for.
pub(super) struct Pending {
    pub(super) key: Key,
    pub(super) id: u64,
    /// Dropped when the fetch ends one way or another, which wakes the waiters.
    pub(super) tx: watch::Sender<()>,
}

/// Keys are hashed once with a seeded hash (foldhash, seeded at random per cache: the keys
/// are what clients send); the maps then use that value as is.
#[derive(Default)]
pub(super) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(super) type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// The objects, in a slab threaded by an LRU list (most recent at `head`).
pub(super) struct Store {
    pub(super) index: HashMap<u64, Vec<u32>, Prehashed>,
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<u32>,
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) used: usize,
    pub(super) pending: HashMap<u64, Vec<Pending>, Prehashed>,
    pub(super) next_fill: u64,
    /// Bumped by every purge; a fetch that started under an older epoch is not stored.
    pub(super) epoch: u64,
}

/// The router's HTTP cache: one per route table, shared by every listener.
pub(crate) struct HttpCache {
    pub(super) seed: RandomState,
    pub(super) store: Mutex<Store>,
}

pub(crate) enum Lookup {
    Hit(Arc<Object>),
    /// Another request is fetching this key; wait for the change, then look again.
    Wait(watch::Receiver<()>),
    Miss(Filler),
}

/// The right to store a fetched response (and, for the request leading a coalesced fetch,
/// the duty to wake the waiters: dropping it does, and marks the key hit-for-miss).
pub(crate) struct Filler {
    pub(super) cache: Arc<HttpCache>,
    pub(super) epoch: u64,
    pub(super) leading: Option<(u64, u64)>,
}

impl HttpCache {
    pub(crate) fn new() -> Arc<HttpCache> {
        Arc::new(HttpCache {
            seed: RandomState::default(),
            store: Mutex::new(Store {
                index: HashMap::default(),
                slots: Vec::new(),
                free: Vec::new(),
                head: NIL,
                tail: NIL,
                used: 0,
                pending: HashMap::default(),
                next_fill: 0,
                epoch: 0,
            }),
        })
    }

    // A panic while the lock was held leaves a consistent-enough store (every mutation
    // completes its list surgery before anything can panic); serving beats refusing.
    pub(super) fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The host and target decide the bucket; the app does not need hashing, since a host
    /// names one app (a key's app is still compared on every match, so objects left from
    /// before a domain moved are never served for the new owner).
    pub(super) fn hash(&self, key: &KeyRef<'_>) -> u64 {
        let mut h = self.seed.build_hasher();
        if has_upper(key.host) {
            h.write(&key.host.to_ascii_lowercase());
        } else {
            h.write(key.host);
        }
        h.write_u8(0xff);
        h.write(key.target.as_bytes());
        h.finish()
    }

    pub(super) fn lookup(
        self: &Arc<Self>,
        key: &KeyRef<'_>,
        req: RequestFields<'_>,
        authorized: bool,
        coalesce: bool,
        now: Instant,
    ) -> Lookup {
        let hash = self.hash(key);
        let mut s = self.lock();
        let (mut hit, mut pass, mut stale) = (None, false, Vec::new());
        if let Some(ids) = s.index.get(&hash) {
            for &i in ids {
                match &s.slots[i as usize].entry {
                    Some(Entry::Object(o)) if key.matches(&o.key) => {
                        if !o.is_fresh(now) {
                            stale.push(i);
                        } else if hit.is_none()
                            && (!authorized || o.shared_with_auth)
                            && o.vary_matches(req)
                        {
                            hit = Some(i);
                        }
                    }
                    Some(Entry::Pass { key: k, until }) if key.matches(k) => {
                        if *until > now {
                            pass = true;
                        } else {
                            stale.push(i);
                        }
                    }
                    _ => {}
                }
            }
        }
        for i in stale {
            s.remove(i);
        }
        if let Some(i) = hit {
            s.touch(i);
            if let Some(Entry::Object(o)) = &s.slots[i as usize].entry {
                return Lookup::Hit(Arc::clone(o));
            }
        }
        let epoch = s.epoch;
        if !coalesce || pass {
            return Lookup::Miss(Filler {
                cache: Arc::clone(self),
                epoch,
                leading: None,
            });
        }
        if let Some(p) = s
            .pending
            .get(&hash)
            .and_then(|ps| ps.iter().find(|p| key.matches(&p.key)))
        {
            return Lookup::Wait(p.tx.subscribe());
        }
        let id = s.next_fill;
        s.next_fill += 1;
        let (tx, _) = watch::channel(());
        s.pending.entry(hash).or_default().push(Pending {
            key: key.to_key(),
            id,
            tx,
        });
        Lookup::Miss(Filler {
            cache: Arc::clone(self),
            epoch,
            leading: Some((hash, id)),
        })
    }
}

/// The table tells the cache when an app's release changes or the app goes: every object of
/// the app is dropped, and fetches already under way become unstorable.
impl AppStore for HttpCache {
    fn forget_app(&self, app_id: &str) {
        let mut s = self.lock();
        s.epoch += 1;
        for i in 0..s.slots.len() {
            if s.slots[i]
                .entry
                .as_ref()
                .is_some_and(|e| *e.key().app_id == *app_id)
            {
                s.remove(i as u32);
            }
        }
    }
}

impl Filler {
    pub(super) fn store(mut self, object: Object, limits: &CacheConfig) {
        let cache = Arc::clone(&self.cache);
        let mut s = cache.lock();
        if let Some((hash, id)) = self.leading.take() {
            s.end_fill(hash, id);
        }
        if s.epoch == self.epoch {
            s.insert_object(
                cache.hash(&KeyRef {
                    app_id: &object.key.app_id,
                    host: &object.key.host,
                    target: &object.key.target,
                }),
                object,
                limits,
            );
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let Some((hash, id)) = self.leading.take() else {
            return;
        };
        let mut s = self.cache.lock();
        if let Some(key) = s.end_fill(hash, id) {
            s.insert_pass(hash, key, Instant::now() + HIT_FOR_MISS);
        }
    }
}

impl Store {
    /// Ends a fetch (waking its waiters) and returns its key.
    pub(super) fn end_fill(&mut self, hash: u64, id: u64) -> Option<Key> {
        let list = self.pending.get_mut(&hash)?;
        let at = list.iter().position(|p| p.id == id)?;
        let pending = list.swap_remove(at);
        if list.is_empty() {
            self.pending.remove(&hash);
        }
        Some(pending.key)
    }

    pub(super) fn insert_object(&mut self, hash: u64, object: Object, limits: &CacheConfig) {
        // What the new object replaces: the same variant, and the key's hit-for-miss.
        let same = |e: &Entry| match e {
            Entry::Object(o) => {
                o.key.app_id == object.key.app_id
                    && o.key.host == object.key.host
                    && o.key.target == object.key.target
                    && o.vary == object.vary
            }
            Entry::Pass { key, .. } => {
                key.app_id == object.key.app_id
                    && key.host == object.key.host
                    && key.target == object.key.target
            }
        };
        let ids: Vec<u32> = self
            .index
            .get(&hash)
            .map(|ids| {
                ids.iter()
                    .copied()
                    .filter(|&i| self.slots[i as usize].entry.as_ref().is_some_and(same))
                    .collect()
            })
            .unwrap_or_default();
        for i in ids {
            self.remove(i);
        }
        // The body was held to `max_object_bytes` while it streamed; the whole object
        // (gzip copy and headers included) must still fit the cache.
        if object.size > limits.max_bytes {
            return;
        }
        if let Some(ids) = self.index.get(&hash) {
            if ids.len() >= MAX_VARIANTS {
                let oldest = ids[0];
                self.remove(oldest);
            }
        }
        self.add(hash, Entry::Object(Arc::new(object)));
        self.evict(limits.max_bytes);
    }

    pub(super) fn insert_pass(&mut self, hash: u64, key: Key, until: Instant) {
        let existing = self.index.get(&hash).and_then(|ids| {
            ids.iter().copied().find(|&i| matches!(&self.slots[i as usize].entry, Some(Entry::Pass { key: k, .. }) if k.app_id == key.app_id && k.host == key.host && k.target == key.target))
        });
        if let Some(i) = existing {
            self.remove(i);
        }
        self.add(hash, Entry::Pass { key, until });
    }

    pub(super) fn evict(&mut self, budget: usize) {
        while self.used > budget && self.tail != NIL {
            self.remove(self.tail);
        }
    }

    pub(super) fn add(&mut self, hash: u64, entry: Entry) -> u32 {
        self.used += entry.size();
        let slot = Slot {
            prev: NIL,
            next: NIL,
            hash,
            entry: Some(entry),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.link_front(i);
        self.index.entry(hash).or_default().push(i);
        i
    }

    pub(super) fn remove(&mut self, i: u32) {
        let Some(entry) = self.slots[i as usize].entry.take() else {
            return;
        };
        self.used -= entry.size();
        self.unlink(i);
        let hash = self.slots[i as usize].hash;
        if let Some(ids) = self.index.get_mut(&hash) {
            ids.retain(|&x| x != i);
            if ids.is_empty() {
                self.index.remove(&hash);
            }
        }
        self.free.push(i);
    }

    pub(super) fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.link_front(i);
        }
    }

    pub(super) fn link_front(&mut self, i: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[i as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old != NIL {
            self.slots[old as usize].prev = i;
        } else {
            self.tail = i;
        }
        self.head = i;
    }

    pub(super) fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let s = &self.slots[i as usize];
            (s.prev, s.next)
        };
        if prev != NIL {
            self.slots[prev as usize].next = next;
        } else if self.head == i {
            self.head = next;
        }
        if next != NIL {
            self.slots[next as usize].prev = prev;
        } else if self.tail == i {
            self.tail = prev;
        }
        let s = &mut self.slots[i as usize];
        s.prev = NIL;
        s.next = NIL;
    }
}

/// `bytes` holds an ASCII capital letter; eight bytes at a time (a host is hashed for every
/// request the cache sees, and is usually in lower case already).
fn has_upper(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or([0; 8]));
        // Per byte below 0x80 (no sum carries out of it): at least `A` and at most `Z`. A
        // byte of 0x80 or more is masked out; a carry it makes only reaches bytes above it,
        // which are then judged wrongly, so such a word is decided byte by byte.
        if w & HIGH != 0 {
            if word.iter().any(u8::is_ascii_uppercase) {
                return true;
            }
            continue;
        }
        let upper = w.wrapping_add(ONES * (0x80 - 0x41)) & !w.wrapping_add(ONES * (0x7f - 0x5a));
        if upper & HIGH != 0 {
            return true;
        }
    }
    words.remainder().iter().any(u8::is_ascii_uppercase)
}

#[cfg(test)]
mod tests {
    use super::has_upper;

    #[test]
    fn has_upper_matches_the_byte_rule() {
        for len in 0..20 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut host = vec![b'a'; len];
                    host[at] = b;
                    assert_eq!(has_upper(&host), host.iter().any(u8::is_ascii_uppercase));
                    if at + 1 < len {
                        host[at + 1] = b'Q';
                        assert!(has_upper(&host));
                    }
                }
            }
        }
    }
}
