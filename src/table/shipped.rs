//! The manifest of the version a job planned, shipped with its tasks: a worker process opens that
//! version from it instead of looking the manifest up (a HEAD on a store) and reading it (a GET),
//! two round trips before its first read of data, in every worker process of every job.
//!
//! Shipped as one opaque blob: a little-endian u32 length, a JSON header (the manifest's location:
//! path, size, naming scheme, e_tag) and the manifest as Lance's own protobuf. Only manifests up to
//! `MAX_SHIPPED_BYTES` travel (a table of thousands of fragments has a manifest of megabytes: its
//! tasks read it from the store, as before).

use lance::Dataset;
use lance_core::Result as LanceResult;
use lance_io::object_store::ObjectStore;
use lance_table::format::{IndexMetadata, Manifest, Transaction, pb};
use lance_table::io::commit::{
    CommitError, CommitHandler, ManifestLocation, ManifestNamingScheme, ManifestWriter, PredecessorIdentity,
};
use object_store::ObjectStore as OSObjectStore;
use object_store::path::Path;
use prost::Message;
use std::sync::Arc;

/// The largest manifest shipped with tasks (Ray sends task arguments up to 100 KiB inline).
pub const MAX_SHIPPED_BYTES: usize = 64 << 10;

/// `ds`'s manifest and its location as one blob, or None when it is too large to ship.
pub fn pack(ds: &Dataset) -> Option<Vec<u8>> {
    let manifest = pb::Manifest::from(ds.manifest()).encode_to_vec();
    if manifest.len() > MAX_SHIPPED_BYTES {
        return None;
    }
    let location = ds.manifest_location();
    let header = serde_json::json!({
        "version": location.version,
        "path": location.path.as_ref(),
        "size": location.size,
        "v2": location.naming_scheme == ManifestNamingScheme::V2,
        "e_tag": location.e_tag,
        "identity": location.identity,
    })
    .to_string();
    let mut blob = Vec::with_capacity(4 + header.len() + manifest.len());
    blob.extend_from_slice(&(header.len() as u32).to_le_bytes());
    blob.extend_from_slice(header.as_bytes());
    blob.extend_from_slice(&manifest);
    Some(blob)
}

/// A blob from `pack`: the location and the manifest's protobuf bytes. None if it is not one.
pub fn unpack(blob: &[u8]) -> Option<(ManifestLocation, &[u8])> {
    let len = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(blob.get(4..4 + len)?).ok()?;
    let text = |key: &str| header.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let location = ManifestLocation {
        version: header.get("version")?.as_u64()?,
        path: Path::from(text("path")?),
        size: header.get("size").and_then(|v| v.as_u64()),
        naming_scheme: if header.get("v2")?.as_bool()? { ManifestNamingScheme::V2 } else { ManifestNamingScheme::V1 },
        e_tag: text("e_tag"),
        identity: text("identity"),
    };
    Some((location, &blob[4 + len..]))
}

/// The table's own commit handler, except that the shipped version's location is known: Lance
/// asks the handler where a version's manifest is (a HEAD) even when it was given the manifest.
#[derive(Debug)]
pub struct KnownLocation {
    pub inner: Arc<dyn CommitHandler>,
    pub location: ManifestLocation,
}

#[async_trait::async_trait]
impl CommitHandler for KnownLocation {
    fn is_version_not_found_definitive(&self) -> bool {
        self.inner.is_version_not_found_definitive()
    }

    fn propagate_commit_error_after_success(&self) -> bool {
        self.inner.propagate_commit_error_after_success()
    }

    async fn resolve_latest_location(
        &self,
        base_path: &Path,
        object_store: &ObjectStore,
    ) -> LanceResult<ManifestLocation> {
        self.inner.resolve_latest_location(base_path, object_store).await
    }

    async fn resolve_version_location(
        &self,
        base_path: &Path,
        version: u64,
        object_store: &dyn OSObjectStore,
    ) -> LanceResult<ManifestLocation> {
        let known = &self.location;
        if version == known.version && known.naming_scheme.manifest_path(base_path, version) == known.path {
            return Ok(known.clone());
        }
        self.inner.resolve_version_location(base_path, version, object_store).await
    }

    async fn version_exists(
        &self,
        base_path: &Path,
        version: u64,
        object_store: &dyn OSObjectStore,
        naming_scheme: ManifestNamingScheme,
    ) -> LanceResult<bool> {
        self.inner.version_exists(base_path, version, object_store, naming_scheme).await
    }

    fn list_detached_manifest_locations<'a>(
        &self,
        base_path: &Path,
        object_store: &'a ObjectStore,
    ) -> futures::stream::BoxStream<'a, LanceResult<ManifestLocation>> {
        self.inner.list_detached_manifest_locations(base_path, object_store)
    }

    fn list_manifest_locations<'a>(
        &self,
        base_path: &Path,
        object_store: &'a ObjectStore,
        sorted_descending: bool,
    ) -> futures::stream::BoxStream<'a, LanceResult<ManifestLocation>> {
        self.inner.list_manifest_locations(base_path, object_store, sorted_descending)
    }

    fn list_manifest_locations_since<'a>(
        &self,
        base_path: &Path,
        object_store: &'a ObjectStore,
        since_version: u64,
    ) -> futures::stream::BoxStream<'a, LanceResult<ManifestLocation>> {
        self.inner.list_manifest_locations_since(base_path, object_store, since_version)
    }

    async fn commit(
        &self,
        manifest: &mut Manifest,
        indices: Option<Vec<IndexMetadata>>,
        base_path: &Path,
        object_store: &ObjectStore,
        manifest_writer: ManifestWriter,
        naming_scheme: ManifestNamingScheme,
        transaction: Option<Transaction>,
    ) -> std::result::Result<ManifestLocation, CommitError> {
        self.inner.commit(manifest, indices, base_path, object_store, manifest_writer, naming_scheme, transaction).await
    }

    fn supports_predecessor_condition(&self) -> bool {
        self.inner.supports_predecessor_condition()
    }

    async fn resolve_latest_identity(
        &self,
        base_path: &Path,
        object_store: &ObjectStore,
    ) -> LanceResult<Option<PredecessorIdentity>> {
        self.inner.resolve_latest_identity(base_path, object_store).await
    }

    async fn resolve_identity(
        &self,
        base_path: &Path,
        object_store: &ObjectStore,
        version: u64,
    ) -> LanceResult<Option<PredecessorIdentity>> {
        self.inner.resolve_identity(base_path, object_store, version).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_after(
        &self,
        manifest: &mut Manifest,
        indices: Option<Vec<IndexMetadata>>,
        base_path: &Path,
        object_store: &ObjectStore,
        manifest_writer: ManifestWriter,
        naming_scheme: ManifestNamingScheme,
        transaction: Option<Transaction>,
        predecessor: &PredecessorIdentity,
    ) -> std::result::Result<ManifestLocation, CommitError> {
        self.inner
            .commit_after(
                manifest,
                indices,
                base_path,
                object_store,
                manifest_writer,
                naming_scheme,
                transaction,
                predecessor,
            )
            .await
    }

    async fn forget_version(&self, base_path: &Path, version: u64, identity: &str) -> LanceResult<()> {
        self.inner.forget_version(base_path, version, identity).await
    }

    async fn delete(&self, base_path: &Path) -> LanceResult<()> {
        self.inner.delete(base_path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch, RecordBatchIterator};
    use arrow::datatypes::{DataType, Field, Schema};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_version_opens_from_its_shipped_manifest_without_the_stores_copy() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().join("t.lance").to_string_lossy().into_owned();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..100))]).unwrap();
        let reader = Box::new(RecordBatchIterator::new(vec![Ok(batch)], schema));
        let ds = crate::table::create(&uri, reader, false).await.unwrap();
        let blob = pack(&ds).unwrap();
        let (location, _) = unpack(&blob).unwrap();
        let planned = ds.manifest_location();
        assert_eq!((location.version, &location.path, location.size), (planned.version, &planned.path, planned.size));
        assert_eq!((location.naming_scheme, &location.e_tag), (planned.naming_scheme, &planned.e_tag));
        assert!(unpack(b"not a shipped manifest").is_none());

        // The store's copy of the manifest is gone: only the shipped one can open the version.
        let tag = crate::table::manifest_tag(&ds).unwrap();
        std::fs::remove_file(format!("/{}", planned.path.as_ref())).unwrap();
        let options = crate::store::StorageOptions::new();
        let version = planned.version;
        assert!(crate::table::open_with(&uri, Some(version), &options).await.is_err());
        crate::table::expect_manifest(&uri, version, &tag, Some(blob));
        let opened = crate::table::open_with(&uri, Some(version), &options).await.unwrap();
        assert_eq!(opened.count_rows(None).await.unwrap(), 100);
        assert_eq!(crate::table::manifest_tag(&opened).as_deref(), Some(tag.as_str()));
    }
}
