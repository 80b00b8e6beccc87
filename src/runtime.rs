//! The one tokio runtime of this process, created on first use and created
//! anew in a child after `fork()` (Ray forks workers; a runtime's threads do
//! not survive a fork).

use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<(u32, Arc<Runtime>)>> = Mutex::new(None);

/// kube-rs asks rustls for ring, object_store's HTTP client for aws-lc-rs: with both compiled in,
/// rustls cannot pick a process default and panics on the first TLS client that relies on it.
/// Install one (ring, as kube-rs asks for) before any client is built.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: a provider is installed already (by the host program): keep it.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn runtime() -> Arc<Runtime> {
    install_crypto_provider();
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, rt)) = guard.as_ref()
        && *owner == pid
    {
        return rt.clone();
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("geneva")
            .build()
            .unwrap_or_else(|e| panic!("cannot start the tokio runtime: {e}")),
    );
    if let Some((_, inherited)) = guard.take() {
        // A runtime inherited through fork() has no threads here: never drop it
        // (its Drop would wait for them).
        std::mem::forget(inherited);
    }
    *guard = Some((pid, rt.clone()));
    rt
}
