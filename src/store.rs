//! Where tables and everything the engine keeps for them live: a local folder, `file://`,
//! `s3://`, `gs://` or `az://`, all through the `object_store` crate that Lance itself uses.
//!
//! Lance finds a store by the URI's scheme in an `ObjectStoreRegistry`. Lance's own providers
//! for the clouds pull in the AWS SDK and OpenDAL (~200 more crates, minutes of every cold
//! build); the providers here build the same `object_store` clients from the storage options
//! (Lance's option names: `aws_endpoint`, `allow_http`, `aws_region`,
//! `azure_storage_account_name`, `google_service_account`, ...) over the environment each
//! cloud's tools read (`AWS_*`, `AZURE_STORAGE_*`, `GOOGLE_*`). Option values are secrets as
//! often as not: they are never put in an error, a log or a repr (`redacted`).

mod one_put;

use lance::session::Session;
use lance_io::object_store::{ObjectStore, ObjectStoreParams, ObjectStoreProvider, ObjectStoreRegistry};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::{ClientConfigKey, RetryConfig};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;
use url::Url;

pub type StorageOptions = HashMap<String, String>;

/// Options Lance reads itself (not the cloud client's): accepted for every scheme.
const LANCE_OPTIONS: [&str; 9] = [
    "allow_http",
    "block_size",
    "download_retry_count",
    "client_max_retries",
    "client_retry_timeout",
    "expires_at_millis",
    "new_table_data_storage_version",
    "new_table_enable_stable_row_ids",
    "new_table_enable_v2_manifest_paths",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{uri}: unsupported scheme {scheme:?}; use a folder path, file://, s3://, gs:// or az:// (azure://, abfs://, abfss://)"
    )]
    Scheme { uri: String, scheme: String },
    #[error("storage option {key:?} is not an option of {scheme}:// stores{hint}")]
    UnknownOption { key: String, scheme: String, hint: String },
    #[error(
        "{uri}: the endpoint {endpoint} is plain http, which the client refuses unless allowed: add storage_options={{'allow_http': 'true'}} (or set {env}=true)"
    )]
    HttpNotAllowed { uri: String, endpoint: String, env: &'static str },
    #[error("{uri}: {message}")]
    Invalid { uri: String, message: String },
}

/// The scheme family of a URI: "file", "s3", "gs" or "az".
pub fn family(uri: &str) -> Result<&'static str, StoreError> {
    let Some((scheme, _)) = uri.split_once("://") else { return Ok("file") };
    match scheme {
        "file" => Ok("file"),
        "s3" | "s3a" => Ok("s3"),
        "gs" => Ok("gs"),
        "az" | "azure" | "abfs" | "abfss" => Ok("az"),
        other => Err(StoreError::Scheme { uri: uri.to_owned(), scheme: other.to_owned() }),
    }
}

fn known_key(family: &str, key: &str) -> bool {
    LANCE_OPTIONS.contains(&key)
        || ClientConfigKey::from_str(key).is_ok()
        || match family {
            "s3" => AmazonS3ConfigKey::from_str(key).is_ok(),
            "gs" => GoogleConfigKey::from_str(key).is_ok(),
            "az" => AzureConfigKey::from_str(key).is_ok(),
            _ => false,
        }
}

/// Every option name a `family` store accepts, for "did you mean".
fn option_names(family: &str) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = LANCE_OPTIONS.to_vec();
    names.extend(["aws_endpoint", "aws_region", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"]);
    names.extend(["aws_virtual_hosted_style_request", "aws_skip_signature", "aws_default_region"]);
    names.extend(["google_service_account", "google_service_account_key", "google_application_credentials"]);
    names.extend(["azure_storage_account_name", "azure_storage_account_key", "azure_storage_sas_key"]);
    names.extend(["azure_storage_use_emulator", "azure_storage_endpoint", "azure_storage_client_id"]);
    names.extend(["timeout", "connect_timeout", "proxy_url"]);
    names.into_iter().filter(|n| known_key(family, n)).collect()
}

/// Checks `options` for `uri` before anything is opened: the scheme, each option's name (with
/// close matches for a typo), and plain-http endpoints without `allow_http`. Never echoes a value.
pub fn validate(uri: &str, options: &StorageOptions) -> Result<(), StoreError> {
    let family = family(uri)?;
    for key in options.keys() {
        if !known_key(family, &key.to_ascii_lowercase()) {
            let names = option_names(family);
            let close = crate::table::close_matches(key, &names);
            let hint = if close.is_empty() {
                format!("; options of {family}:// stores include {}", names[..names.len().min(12)].join(", "))
            } else {
                format!("; did you mean {}?", close.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(" or "))
            };
            return Err(StoreError::UnknownOption { key: key.clone(), scheme: family.to_owned(), hint });
        }
    }
    let lookup = |keys: &[&str], env: &[&str]| -> Option<String> {
        keys.iter()
            .find_map(|k| options.iter().find(|(o, _)| o.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone()))
            .or_else(|| env.iter().find_map(|e| std::env::var(e).ok()))
    };
    let truthy = |v: Option<String>| v.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    if family == "s3" {
        let endpoint = lookup(
            &["aws_endpoint", "endpoint", "aws_endpoint_url", "endpoint_url"],
            &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"],
        );
        if let Some(endpoint) = endpoint.filter(|e| e.starts_with("http://"))
            && !truthy(lookup(&["allow_http", "aws_allow_http"], &["AWS_ALLOW_HTTP"]))
        {
            return Err(StoreError::HttpNotAllowed { uri: uri.to_owned(), endpoint, env: "AWS_ALLOW_HTTP" });
        }
    }
    Ok(())
}

/// `options` with every value replaced: what may be shown of them.
pub fn redacted(options: &StorageOptions) -> String {
    let mut keys: Vec<&String> = options.keys().collect();
    keys.sort();
    format!("{{{}}}", keys.iter().map(|k| format!("'{k}': '***'")).collect::<Vec<_>>().join(", "))
}

/// A client for `uri`'s bucket or container, from the environment and `options`, that gives
/// up in seconds when the endpoint is wrong (object_store's defaults retry for 3 minutes).
/// One per (bucket, options) per process: building one loads the TLS roots (~440 KB read),
/// which every table open and checkpoint paid before (8.8 MB per commit of a 400k-row fragment).
pub fn client(uri: &str, options: &StorageOptions) -> Result<Arc<dyn object_store::ObjectStore>, StoreError> {
    family(uri)?;
    cached_client(uri, options).map_err(|e| StoreError::Invalid { uri: uri.to_owned(), message: explain(uri, &e) })
}

/// `client` with object_store's own error (the upload path words it itself).
pub fn cached_client(uri: &str, options: &StorageOptions) -> object_store::Result<Arc<dyn object_store::ObjectStore>> {
    type Key = (String, Vec<(String, String)>);
    static CLIENTS: LazyLock<std::sync::Mutex<HashMap<Key, Arc<dyn object_store::ObjectStore>>>> =
        LazyLock::new(Default::default);
    let root = match Url::parse(uri) {
        Ok(url) => format!("{}://{}", url.scheme(), url.authority()),
        Err(_) => uri.to_owned(),
    };
    // The environment the builders read is part of what a client is (a test, or a notebook,
    // may point AWS_ENDPOINT_URL elsewhere between two uses of the same bucket).
    let mut sorted: Vec<(String, String)> = options.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    sorted.extend(std::env::vars().filter(|(k, _)| ["AWS_", "AZURE", "GOOGLE_"].iter().any(|p| k.starts_with(p))));
    sorted.sort();
    let key = (root.clone(), sorted);
    if let Some(found) = CLIENTS.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(found);
    }
    let built = build_client(&root, options)?;
    if let Ok(mut clients) = CLIENTS.lock() {
        clients.insert(key, built.clone());
    }
    Ok(built)
}

fn build_client(uri: &str, options: &StorageOptions) -> object_store::Result<Arc<dyn object_store::ObjectStore>> {
    let family = family(uri).unwrap_or("file");
    let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(30), ..Default::default() };
    let mut settings: Vec<(String, String)> =
        options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let env_prefix = match family {
        "s3" => "AWS",
        "gs" => "GOOGLE",
        _ => "AZURE",
    };
    if !settings.iter().any(|(k, _)| k == "connect_timeout")
        && std::env::var_os(format!("{env_prefix}_CONNECT_TIMEOUT")).is_none()
    {
        settings.push(("connect_timeout".into(), "5s".into()));
    }
    if family == "s3" && std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v == "true") {
        settings.push(("allow_http".into(), "true".into()));
    }
    settings.retain(|(k, _)| !LANCE_OPTIONS.contains(&k.as_str()) || k == "allow_http");
    Ok(match family {
        "s3" => {
            let mut b = AmazonS3Builder::from_env().with_url(uri).with_retry(retry);
            for (k, v) in &settings {
                b = b.with_config(AmazonS3ConfigKey::from_str(k)?, v);
            }
            Arc::new(b.build()?)
        }
        "gs" => {
            let mut b = GoogleCloudStorageBuilder::from_env().with_url(uri).with_retry(retry);
            for (k, v) in &settings {
                b = b.with_config(GoogleConfigKey::from_str(k)?, v);
            }
            Arc::new(b.build()?)
        }
        "az" => {
            let mut b = MicrosoftAzureBuilder::from_env().with_url(uri).with_retry(retry);
            for (k, v) in &settings {
                b = b.with_config(AzureConfigKey::from_str(k)?, v);
            }
            Arc::new(b.build()?)
        }
        _ => Arc::new(object_store::local::LocalFileSystem::new()),
    })
}

/// Whether the store behind `uri` refuses to create an object that exists (`If-None-Match: *`,
/// `PutMode::Create`): Lance's commits to an object store rely on it, and a store that ignores
/// it lets two writers both "win" and loses a commit without a word. One probe object under
/// `<uri>/_geneva/probe/`, created twice and removed. A local folder always refuses (links).
pub async fn refuses_overwrite(uri: &str, options: &StorageOptions) -> Result<bool, StoreError> {
    use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
    if family(uri)? == "file" {
        return Ok(true);
    }
    let invalid = |e: object_store::Error| StoreError::Invalid { uri: uri.to_owned(), message: explain(uri, &e) };
    let url = Url::parse(uri).map_err(|e| StoreError::Invalid { uri: uri.to_owned(), message: e.to_string() })?;
    let root = format!("{}://{}", url.scheme(), url.authority());
    let store = client(&root, options)?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{}/_geneva/probe/{}-{nanos}", url.path().trim_matches('/'), std::process::id());
    let path = object_store::path::Path::from(name.trim_start_matches('/'));
    let create = || PutOptions { mode: PutMode::Create, ..Default::default() };
    store.put_opts(&path, PutPayload::from_static(b"1"), create()).await.map_err(invalid)?;
    let second = store.put_opts(&path, PutPayload::from_static(b"2"), create()).await;
    let _ = store.delete(&path).await;
    match second {
        Ok(_) => Ok(false),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(true),
        Err(e) => Err(invalid(e)),
    }
}

/// An object store error with its causes (object_store's own message stops at "error sending
/// request") and what to check; never an option's value.
pub fn explain(uri: &str, err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    let hint = match family(uri) {
        Ok("s3") => {
            "check the bucket exists, the endpoint (aws_endpoint / AWS_ENDPOINT_URL, with allow_http for http) and the \
             credentials (aws_access_key_id / aws_secret_access_key, AWS_PROFILE or a role)"
        }
        Ok("gs") => {
            "check the bucket exists and the credentials (google_service_account / GOOGLE_APPLICATION_CREDENTIALS)"
        }
        Ok("az") => {
            "check the container exists, the account (azure_storage_account_name) and its credentials \
             (azure_storage_account_key / azure_storage_sas_key), or azure_storage_endpoint for an emulator"
        }
        _ => "check that the folder exists and is writable",
    };
    format!("{text}\n  {hint}")
}

/// Lance's provider for the cloud schemes, building `client`s.
#[derive(Debug)]
struct CloudProvider;

#[async_trait::async_trait]
impl ObjectStoreProvider for CloudProvider {
    async fn new_store(&self, base_path: Url, params: &ObjectStoreParams) -> lance_core::Result<ObjectStore> {
        let options = params.storage_options().cloned().unwrap_or_default();
        let root = format!("{}://{}", base_path.scheme(), base_path.authority());
        let inner = client(&root, &options).map_err(|e| lance_core::Error::invalid_input(e.to_string()))?;
        // Files Lance starts uploading in parts but that end small are one PUT (see `one_put`); not for
        // stores that need parts of one size (R2: `use_constant_size_upload_parts`).
        let inner: Arc<dyn object_store::ObjectStore> = if params.use_constant_size_upload_parts {
            inner
        } else {
            Arc::new(one_put::OnePut::new(inner, one_put::ONE_PUT_BYTES))
        };
        let retries = options.get("download_retry_count").and_then(|v| v.parse().ok()).unwrap_or(3);
        Ok(ObjectStore::new(
            inner,
            base_path,
            params.block_size,
            params.object_store_wrapper.clone(),
            params.use_constant_size_upload_parts,
            true,
            64,
            retries,
            Some(&options),
        ))
    }

    fn calculate_object_store_prefix(&self, url: &Url, options: Option<&StorageOptions>) -> lance_core::Result<String> {
        // Azure containers are unique per account: the account is part of the prefix.
        let account = options
            .and_then(|o| o.get("azure_storage_account_name").or_else(|| o.get("account_name")))
            .cloned()
            .or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok())
            .unwrap_or_default();
        Ok(format!("{}${}@{}", url.scheme(), account, url.authority()))
    }
}

/// The object store registry every Lance call of this process uses: Lance's own (local files,
/// memory) plus the cloud schemes above.
pub fn registry() -> Arc<ObjectStoreRegistry> {
    static REGISTRY: LazyLock<Arc<ObjectStoreRegistry>> = LazyLock::new(|| {
        let registry = ObjectStoreRegistry::default();
        let cloud: Arc<dyn ObjectStoreProvider> = Arc::new(CloudProvider);
        for scheme in ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"] {
            registry.insert(scheme, cloud.clone());
        }
        Arc::new(registry)
    });
    REGISTRY.clone()
}

/// The Lance session of this process (caches, and the registry above).
pub fn session() -> Arc<Session> {
    static SESSION: LazyLock<Arc<Session>> = LazyLock::new(|| Arc::new(Session::new(64 << 20, 64 << 20, registry())));
    SESSION.clone()
}

/// Store parameters carrying `options` for Lance.
pub fn params(options: &StorageOptions) -> ObjectStoreParams {
    ObjectStoreParams {
        storage_options_accessor: (!options.is_empty())
            .then(|| Arc::new(lance_io::object_store::StorageOptionsAccessor::with_static_options(options.clone()))),
        ..Default::default()
    }
}

/// The Lance object store and the path inside it of `uri`.
pub async fn locate(
    uri: &str,
    options: &StorageOptions,
) -> lance_core::Result<(Arc<ObjectStore>, object_store::path::Path)> {
    ObjectStore::from_uri_and_params(registry(), uri, &params(options)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> StorageOptions {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn options_are_checked_by_name_never_echoing_values() {
        assert!(validate("s3://b/t", &opts(&[("aws_endpoint", "https://x"), ("aws_region", "eu")])).is_ok());
        assert!(validate("az://c/t", &opts(&[("azure_storage_account_name", "a"), ("allow_http", "true")])).is_ok());
        assert!(validate("gs://b/t", &opts(&[("google_service_account", "/k.json")])).is_ok());
        let err = validate("s3://b/t", &opts(&[("aws_endpiont", "s3cr3t")])).unwrap_err().to_string();
        assert!(err.contains("did you mean \"aws_endpoint\"") && !err.contains("s3cr3t"), "{err}");
        let err = validate("gs://b/t", &opts(&[("azure_storage_account_name", "x")])).unwrap_err().to_string();
        assert!(err.contains("not an option of gs://"), "{err}");
        let err = validate("ftp://b/t", &StorageOptions::new()).unwrap_err().to_string();
        assert!(err.contains("unsupported scheme \"ftp\""), "{err}");
        assert_eq!(redacted(&opts(&[("b", "secret"), ("a", "x")])), "{'a': '***', 'b': '***'}");
    }

    #[test]
    fn a_plain_http_endpoint_needs_allow_http() {
        let err = validate("s3://b/t", &opts(&[("aws_endpoint", "http://127.0.0.1:9")])).unwrap_err().to_string();
        assert!(err.contains("allow_http") && err.contains("http://127.0.0.1:9"), "{err}");
        let ok = opts(&[("aws_endpoint", "http://127.0.0.1:9"), ("allow_http", "true")]);
        assert!(validate("s3://b/t", &ok).is_ok());
    }
}
