"""OCI images of locked environments, assembled from conda packages without a container."""
