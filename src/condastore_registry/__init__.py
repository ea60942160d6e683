"""The OCI registry: distribution spec v1.1 over condastore's blob store."""
