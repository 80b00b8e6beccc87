//! Where layer shards go and where workers fetch them from: a local or mounted
//! folder, `file://`, `s3://`, `gs://` or `az://`, all through `object_store`.
//!
//! Credentials and endpoints come from the environment, the way each cloud's
//! own tools read them (`AWS_*`, `GOOGLE_*`, `AZURE_*`). Names are content
//! hashes, so a shard that exists is never sent again. A PUT, or a multipart
//! upload's completion, is atomic on every store (the local one writes a staging
//! file and renames it): a crash never leaves a partial zip under a final name.

use super::PackageError;
use super::shards::Shard;
use futures::{StreamExt, TryStreamExt};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Shards uploaded at once.
const CONCURRENT_UPLOADS: usize = 4;

/// An upload folder: a local path or an object store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    Remote(String),
}

impl Location {
    /// `/shared/zips`, `file:///shared/zips`, `s3://bucket/prefix`, `gs://...`, `az://container/prefix`.
    pub fn parse(uri: &str) -> Result<Self, PackageError> {
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(Self::Local(PathBuf::from(path)));
        }
        let Some((scheme, _)) = uri.split_once("://") else {
            return Ok(Self::Local(PathBuf::from(uri)));
        };
        match scheme {
            "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
                Ok(Self::Remote(uri.trim_end_matches('/').into()))
            }
            _ => Err(PackageError::BadLocation(format!(
                "{uri}: unsupported scheme {scheme:?}; use a folder path, file://, s3://, gs:// or az://"
            ))),
        }
    }

    pub fn local(&self) -> Option<&Path> {
        match self {
            Self::Local(p) => Some(p),
            Self::Remote(_) => None,
        }
    }

    /// The URI a worker fetches `name` from.
    pub fn join(&self, name: &str) -> String {
        match self {
            Self::Local(p) => p.join(name).display().to_string(),
            Self::Remote(uri) => format!("{uri}/{name}"),
        }
    }

    fn store_error(&self, source: object_store::Error) -> PackageError {
        let (uri, hint) = match self {
            Self::Local(p) => (p.display().to_string(), "check that the folder is writable"),
            Self::Remote(uri) => (uri.clone(), hint(uri)),
        };
        PackageError::Store { uri, hint: hint.to_owned(), source: Box::new(source) }
    }

    /// The store and the prefix inside it.
    fn open(&self) -> Result<(Arc<dyn ObjectStore>, StorePath), PackageError> {
        match self {
            Self::Local(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|source| PackageError::Io { path: dir.display().to_string(), source })?;
                let abs = std::path::absolute(dir)
                    .map_err(|source| PackageError::Io { path: dir.display().to_string(), source })?;
                let prefix = StorePath::from_absolute_path(&abs).map_err(|e| self.store_error(e.into()))?;
                Ok((Arc::new(LocalFileSystem::new()), prefix))
            }
            Self::Remote(uri) => {
                let url = url::Url::parse(uri).map_err(|e| PackageError::BadLocation(format!("{uri}: {e}")))?;
                let prefix = StorePath::from_url_path(url.path()).map_err(|e| self.store_error(e.into()))?;
                // The one client per bucket of this process (crate::store): gives up in seconds, not
                // object_store's 3 minutes, when the endpoint is wrong.
                let store = crate::store::cached_client(uri, &Default::default()).map_err(|e| self.store_error(e))?;
                Ok((store, prefix))
            }
        }
    }
}

/// What to set when a store refuses or cannot be reached.
fn hint(uri: &str) -> &'static str {
    if uri.starts_with("s3") {
        "check the bucket exists and the credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, \
         a role), AWS_REGION, and AWS_ENDPOINT_URL (+ AWS_ALLOW_HTTP=true for http) for an S3-compatible store"
    } else if uri.starts_with("gs") {
        "check the bucket exists and the credentials: GOOGLE_SERVICE_ACCOUNT or GOOGLE_APPLICATION_CREDENTIALS \
         (a service-account key file)"
    } else {
        "check the container exists and the credentials: AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY \
         (or AZURE_STORAGE_SAS_KEY), or AZURE_STORAGE_USE_EMULATOR=true for Azurite"
    }
}

/// Uploads each shard to `dest` unless an object of that name is there already
/// (names are content hashes). Returns the bytes sent.
pub fn upload(shards: &[Shard], dest: &Location) -> Result<u64, PackageError> {
    if shards.is_empty() {
        return Ok(0);
    }
    let (store, prefix) = dest.open()?;
    crate::runtime::runtime().block_on(async {
        let existing: HashSet<String> = match dest {
            Location::Local(dir) => {
                shards.iter().filter(|s| dir.join(&s.name).exists()).map(|s| s.name.clone()).collect()
            }
            // One listing instead of a HEAD per shard: the folder holds every environment's shards.
            Location::Remote(_) => match store.list_with_delimiter(Some(&prefix)).await {
                Ok(found) => {
                    found.objects.into_iter().filter_map(|o| o.location.filename().map(str::to_owned)).collect()
                }
                Err(object_store::Error::NotFound { .. }) => HashSet::new(),
                Err(e) => return Err(dest.store_error(e)),
            },
        };
        futures::stream::iter(shards.iter().filter(|shard| !existing.contains(&shard.name)))
            .map(|shard| {
                let (store, path) = (store.clone(), prefix.clone().join(shard.name.as_str()));
                async move {
                    // A local folder on the cache's filesystem gets a hard link (no bytes copied;
                    // atomic, and refused if the name exists); anything else streams the file.
                    if dest.local().is_some() && link(&store, &shard.path, &path).await {
                        return Ok(shard.bytes);
                    }
                    send(store, path, &shard.path).await.map_err(|e| match e {
                        Sent::Read(source) => PackageError::Io { path: shard.path.display().to_string(), source },
                        Sent::Store(e) => dest.store_error(e),
                    })?;
                    Ok(shard.bytes)
                }
            })
            .buffer_unordered(CONCURRENT_UPLOADS)
            .try_fold(0, |total, n| async move { Ok(total + n) })
            .await
    })
}

/// True when `file` is now also at `to` in the local store (a hard link; or it already was).
async fn link(store: &Arc<dyn ObjectStore>, file: &Path, to: &StorePath) -> bool {
    let Ok(from) =
        std::path::absolute(file).map_err(|_| ()).and_then(|f| StorePath::from_absolute_path(f).map_err(|_| ()))
    else {
        return false;
    };
    match store.copy_if_not_exists(&from, to).await {
        Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => true,
        Err(_) => false, // another filesystem: stream it
    }
}

enum Sent {
    Read(std::io::Error),
    Store(object_store::Error),
}

/// One file to one object: a single PUT when small, a multipart upload when large;
/// the object appears only when complete, and an upload that fails is aborted.
async fn send(store: Arc<dyn ObjectStore>, path: StorePath, file: &Path) -> Result<(), Sent> {
    let mut input = tokio::fs::File::open(file).await.map_err(Sent::Read)?;
    let mut writer = BufWriter::new(store, path);
    // BufWriter reports store errors as io::Error wrapping object_store::Error.
    let classify = |e: std::io::Error| match e.downcast::<object_store::Error>() {
        Ok(store_error) => Sent::Store(store_error),
        Err(io) => Sent::Read(io),
    };
    if let Err(e) = tokio::io::copy(&mut input, &mut writer).await {
        let _ = writer.abort().await;
        return Err(classify(e));
    }
    // A failed completion leaves no object: a PUT or a multipart completion is all or nothing.
    writer.shutdown().await.map_err(classify)
}

/// A worker's copy of the shard at `uri`: the path itself when local, else
/// downloaded to `into` (written then renamed).
pub fn fetch(uri: &str, into: &Path) -> Result<PathBuf, PackageError> {
    let location = Location::parse(uri)?;
    if let Location::Local(path) = location {
        return Ok(path);
    }
    let (store, path) = location.open()?;
    let tmp = into.with_extension(format!("download-{}", std::process::id()));
    let fetched = crate::runtime::runtime().block_on(async {
        let io = |source| PackageError::Io { path: tmp.display().to_string(), source };
        let mut stream = store.get(&path).await.map_err(|e| location.store_error(e))?.into_stream();
        let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
        while let Some(chunk) = stream.next().await {
            out.write_all(&chunk.map_err(|e| location.store_error(e))?).await.map_err(io)?;
        }
        out.sync_all().await.map_err(io)?;
        tokio::fs::rename(&tmp, into).await.map_err(io)
    });
    if fetched.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    fetched.map(|()| into.to_path_buf())
}
