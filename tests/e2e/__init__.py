"""End-to-end tests on the local control plane: the Helm chart installed, its RBAC exercised by the real operator."""
