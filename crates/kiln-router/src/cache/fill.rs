//! Filling: a response's body captured while it streams to the client, and stored once it
//! has ended whole.

use super::*;

pub(super) struct OwnedKeyParts {
    pub(super) app: Arc<AppEntry>,
    pub(super) host: HeaderValue,
    pub(super) target: Option<PathAndQuery>,
}

pub(super) struct Fill {
    pub(super) filler: Filler,
    pub(super) head: Head,
    pub(super) key: OwnedKeyParts,
    pub(super) parts: Vec<Bytes>,
    pub(super) len: usize,
    pub(super) limits: CacheConfig,
}

impl Fill {
    /// The body is complete: build the object and store it.
    pub(super) fn complete(self) {
        let Fill {
            filler,
            head,
            key,
            parts,
            len,
            limits,
        } = self;
        // One exact-size copy, so nothing of hyper's read buffers stays pinned.
        let mut buf = BytesMut::with_capacity(len);
        for p in &parts {
            buf.extend_from_slice(p);
        }
        let body = buf.freeze();
        let gzip = if head.encodable {
            compress::gzip_all(&body, compress::STORED_LEVEL).filter(|gz| gz.len() < body.len())
        } else {
            None
        };
        let key = Key {
            app_id: key.app.app_id.as_str().into(),
            host: key.host.as_bytes().to_ascii_lowercase().into_boxed_slice(),
            target: target(&key.target).into(),
        };
        // The heads hits are served with: everything but `Age` is known now.
        let mut headers = head.headers;
        headers.insert(X_CACHE.clone(), HeaderValue::from_static("HIT"));
        headers.insert(header::AGE, age_value(0));
        let gzip = gzip.map(|gz| {
            let mut h = headers.clone();
            compress::mark_encoded(&mut h);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(gz.len()));
            Variant::new(gz, h)
        });
        if head.status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let has_date = headers.contains_key(header::DATE);
        let plain = Variant::new(body, headers);
        let vary_size: usize = head
            .vary
            .iter()
            .map(|(n, v)| {
                n.as_str().len()
                    + 32
                    + if let VaryValue::Value(b) = v {
                        b.len()
                    } else {
                        0
                    }
            })
            .sum();
        let size = OBJECT_OVERHEAD
            + plain.size()
            + gzip.as_ref().map_or(0, Variant::size)
            + vary_size
            + key.size();
        let object = Object {
            key,
            status: head.status,
            plain,
            gzip,
            has_date,
            vary: head.vary,
            shared_with_auth: head.shared_with_auth,
            lifetime: head.lifetime,
            initial_age: head.initial_age,
            stored_at: head.received,
            size,
        };
        filler.store(object, &limits);
    }
}

/// A dyno's response body on its way to the client, copied aside for the cache. Frames
/// pass through as they arrive; a body that outgrows the object limit, breaks off or is
/// abandoned by the client is simply not stored.
pub(super) struct FillBody {
    pub(super) inner: RouterBody,
    pub(super) fill: Option<Fill>,
}

impl FillBody {
    pub(super) fn complete(&mut self) {
        if let Some(fill) = self.fill.take() {
            fill.complete();
        }
    }
}

impl Body for FillBody {
    type Data = Bytes;
    type Error = crate::wire::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, crate::wire::BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(fill)) = (frame.data_ref(), this.fill.as_mut()) {
                    fill.len += data.len();
                    if fill.len > fill.limits.max_object_bytes {
                        this.fill = None;
                    } else {
                        fill.parts.push(data.clone());
                    }
                }
                // hyper may not poll again once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.complete();
                }
            }
            Poll::Ready(None) => this.complete(),
            Poll::Ready(Some(Err(_))) => this.fill = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for FillBody {
    fn drop(&mut self) {
        // Empty bodies (204, `Content-Length: 0`) are dropped without being polled.
        if self.fill.is_some() && self.inner.is_end_stream() {
            self.complete();
        }
    }
}
