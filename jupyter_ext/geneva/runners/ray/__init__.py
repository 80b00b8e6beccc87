"""Ray cluster sessions: embedded local Ray, an existing cluster (Ray Client), KubeRay."""
