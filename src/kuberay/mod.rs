//! KubeRay clusters created on demand: the RayCluster manifest (`manifest`) and the
//! Kubernetes API calls (`client`: create / patch / wait / port-forward / delete / list).

pub mod client;
pub mod manifest;

pub use client::{Applied, ClusterInfo, Forward, KubeRay, KubeRayError};
pub use manifest::{ClusterSpec, GroupSpec};
