"""task-processor worker side: settings, logging and the long-running RQ worker (no Kubernetes client)."""
