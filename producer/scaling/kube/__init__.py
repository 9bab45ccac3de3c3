"""The autoscaler on Kubernetes: the API client (the only importer of ``kubernetes``), a Deployment as scale target,
Events on it, the pools found among the namespace's Deployments, and leader election through a Lease."""
