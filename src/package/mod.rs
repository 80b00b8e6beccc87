//! The notebook's environment on its way to a cluster: which installed
//! distributions can ship as files, which the cluster must install (pins),
//! and which can do neither.

pub mod dist;
pub mod layer;
pub mod pack;
pub mod shards;
pub mod store;
pub mod verdict;
pub mod watch;

pub use dist::{Distribution, scan_site_packages};
pub use verdict::{DistVerdict, Verdict, check};

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Target(#[from] crate::platform::TargetError),
    #[error("{0} is not a directory of installed packages (site-packages)")]
    NotSitePackages(String),
    #[error("cannot ship to the cluster:\n  {0}")]
    Blocked(String),
    #[error("the environment holds {total}, over the {cap} cap (max_total_bytes); biggest files: {biggest}")]
    TooBig { total: String, cap: String, biggest: String },
    #[error("upload_dir {0}")]
    BadLocation(String),
    #[error("{uri}: {source}\n  {hint}")]
    Store {
        uri: String,
        hint: String,
        #[source]
        source: Box<object_store::Error>,
    },
    #[error(
        "workspace {root} holds {files} files ({bytes}), over the cap of {cap}: is it the folder you meant to ship? Choose the project folder: ray_cluster(workspace='/path/to/project') or `workspace: /path/to/project` in %%geneva_cluster; or raise the cap with workspace_max_files= / workspace_max_bytes="
    )]
    WorkspaceTooBig { root: String, files: usize, bytes: String, cap: String },
    #[error(
        "workspace {root} is {what}: it holds credentials, shell history and caches, and would ship all of them to the cluster. Choose the project folder: ray_cluster(workspace='/path/to/project') or `workspace: /path/to/project` in %%geneva_cluster (or start the kernel there)"
    )]
    WorkspaceIsHome { root: String, what: &'static str },
    #[error("refusing {zip}: entry {entry:?} would be written outside the extraction folder")]
    UnsafeEntry { zip: String, entry: String },
}
