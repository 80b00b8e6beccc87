//! Uploads Lance starts in parts but that end small go as one PUT.
//!
//! Lance's writer turns a file into a multipart upload once it has buffered 5 MiB: a request to
//! start it, one per part, one to complete it, and a store that joins the parts at the end. For the
//! column files of most fragments (a million 8-byte values is 8 MB) that is two requests more than
//! one PUT, on the critical path of every commit (measured on moto: 8 MB in parts 81 ms, as one PUT
//! 54 ms). `OnePut` holds the parts of an upload until they pass `ONE_PUT_BYTES`: an upload that
//! completes below it is one PUT; past it, the real multipart upload starts with what was held as
//! its first part, and the later parts follow in order. Every other call goes to the store as is.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::channel::oneshot;
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};

/// The largest upload sent as one PUT. A writer holds at most this much (and the part that passes
/// it) before its upload starts; Lance's own writer keeps up to 11 parts of 5 MiB or more in flight.
pub const ONE_PUT_BYTES: usize = 16 << 20;

/// `inner`, with multipart uploads of up to `limit` bytes sent as one PUT (see the module).
#[derive(Debug)]
pub struct OnePut {
    inner: Arc<dyn ObjectStore>,
    limit: usize,
}

impl OnePut {
    pub fn new(inner: Arc<dyn ObjectStore>, limit: usize) -> Self {
        Self { inner, limit }
    }
}

impl fmt::Display for OnePut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

#[async_trait]
impl ObjectStore for OnePut {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(Gathered {
            inner: self.inner.clone(),
            location: location.clone(),
            opts: Some(opts),
            limit: self.limit,
            held: Vec::new(),
            held_bytes: 0,
            upload: Arc::new(Mutex::new(None)),
            handed: None,
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

type Upload = Arc<Mutex<Option<Box<dyn MultipartUpload>>>>;

/// An upload's parts, held until they pass the limit (then the real upload's).
struct Gathered {
    inner: Arc<dyn ObjectStore>,
    location: Path,
    opts: Option<PutMultipartOptions>,
    limit: usize,
    held: Vec<PutPayload>,
    held_bytes: usize,
    /// The real multipart upload, once started.
    upload: Upload,
    /// Once the upload started: true when the last part given so far has been handed to it (a part's
    /// number is the order it is handed over in, whatever order the part futures are polled in),
    /// false when that part, or one before it, failed.
    handed: Option<Shared<BoxFuture<'static, bool>>>,
}

impl fmt::Debug for Gathered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gathered")
            .field("location", &self.location)
            .field("held_bytes", &self.held_bytes)
            .field("started", &self.handed.is_some())
            .finish()
    }
}

fn failed_before() -> object_store::Error {
    object_store::Error::Generic { store: "OnePut", source: "an earlier part of this upload failed".into() }
}

impl Gathered {
    /// A future resolving when the part now being given is handed to the upload, and its sender.
    fn next_turn(&mut self) -> (Option<Shared<BoxFuture<'static, bool>>>, oneshot::Sender<()>) {
        let (tx, rx) = oneshot::channel::<()>();
        let previous = self.handed.replace(rx.map(|r| r.is_ok()).boxed().shared());
        (previous, tx)
    }
}

#[async_trait]
impl MultipartUpload for Gathered {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let size = data.content_length();
        if self.handed.is_none() && self.held_bytes + size <= self.limit {
            self.held_bytes += size;
            self.held.push(data);
            return futures::future::ready(Ok(())).boxed();
        }
        let upload = self.upload.clone();
        let (previous, handed) = self.next_turn();
        match previous {
            // The first part past the limit: the upload starts, with what was held as its first part.
            None => {
                let first: PutPayload = std::mem::take(&mut self.held).into_iter().flatten().chain(data).collect();
                self.held_bytes = 0;
                let (inner, location, opts) = (self.inner.clone(), self.location.clone(), self.opts.take());
                async move {
                    let mut started = inner.put_multipart_opts(&location, opts.unwrap_or_default()).await?;
                    let part = started.put_part(first);
                    *upload.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
                    let _ = handed.send(());
                    part.await
                }
                .boxed()
            }
            Some(previous) => async move {
                if !previous.await {
                    return Err(failed_before());
                }
                let part = match upload.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                    Some(started) => started.put_part(data),
                    None => return Err(failed_before()),
                };
                let _ = handed.send(());
                part.await
            }
            .boxed(),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let Some(handed) = self.handed.take() else {
            let payload: PutPayload = std::mem::take(&mut self.held).into_iter().flatten().collect();
            let PutMultipartOptions { tags, attributes, extensions } = self.opts.take().unwrap_or_default();
            let opts = PutOptions { mode: PutMode::Overwrite, tags, attributes, extensions };
            return self.inner.put_opts(&self.location, payload, opts).await;
        };
        if !handed.await {
            return Err(failed_before());
        }
        let started = self.upload.lock().unwrap_or_else(|p| p.into_inner()).take();
        match started {
            Some(mut started) => started.complete().await,
            None => Err(failed_before()),
        }
    }

    async fn abort(&mut self) -> Result<()> {
        self.held.clear();
        if let Some(handed) = self.handed.take() {
            handed.await;
        }
        let started = self.upload.lock().unwrap_or_else(|p| p.into_inner()).take();
        match started {
            Some(mut started) => started.abort().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn upload(store: &OnePut, path: &str, parts: &[&'static [u8]], reversed: bool) -> Vec<u8> {
        let path = Path::from(path);
        let mut up = store.put_multipart_opts(&path, PutMultipartOptions::default()).await.unwrap();
        let mut pending: Vec<_> = parts.iter().map(|p| up.put_part(PutPayload::from_static(p))).collect();
        if reversed {
            pending.reverse(); // polled last part first: the parts keep the order they were given in
        }
        futures::future::try_join_all(pending).await.unwrap();
        up.complete().await.unwrap();
        store.get(&path).await.unwrap().bytes().await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn an_upload_below_the_limit_is_one_put_and_one_past_it_keeps_its_parts_in_order() {
        let store = OnePut::new(Arc::new(InMemory::new()), 10);
        assert_eq!(upload(&store, "small", &[b"abcd", b"efgh"], false).await, b"abcdefgh");
        let parts: &[&'static [u8]] = &[b"abcd", b"efgh", b"ijkl", b"mnop", b"qrst"];
        for reversed in [false, true] {
            assert_eq!(upload(&store, "large", parts, reversed).await, b"abcdefghijklmnopqrst");
        }
        // Aborted before and after the upload started: nothing is written.
        for parts in [&parts[..1], parts] {
            let path = Path::from(format!("aborted-{}", parts.len()));
            let mut up = store.put_multipart_opts(&path, PutMultipartOptions::default()).await.unwrap();
            let pending: Vec<_> = parts.iter().map(|p| up.put_part(PutPayload::from_static(p))).collect();
            futures::future::try_join_all(pending).await.unwrap();
            up.abort().await.unwrap();
            assert!(store.head(&path).await.is_err());
        }
    }
}
