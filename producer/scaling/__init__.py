"""The autoscaler: observe queues and workers, decide with a pure policy, set a target's replicas (a Deployment
through the Kubernetes API, or local worker processes), one leader at a time."""
