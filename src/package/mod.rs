//! The notebook's environment on its way to a cluster: which installed
//! distributions can ship as files, which the cluster must install (pins),
//! and which can do neither.

pub mod dist;
pub mod verdict;

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
}
