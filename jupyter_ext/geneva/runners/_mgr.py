"""The second import path the KubeRay docs use: ``from geneva.runners._mgr import ray_cluster``."""

from geneva.runners.ray._mgr import RayClusterSession, active_session, ray_cluster

__all__ = ["RayClusterSession", "active_session", "ray_cluster"]
