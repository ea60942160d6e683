"""Who may do what where: passwords, principals, role bindings (RBAC)."""
