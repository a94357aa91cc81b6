"""End-to-end support: a real Kubernetes control plane on loopback, and the tests that use it."""
