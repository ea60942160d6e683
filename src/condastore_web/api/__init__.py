"""The REST API ``/api/v1``: one module per resource family, thin over the service layer."""
