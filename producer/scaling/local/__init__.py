"""The autoscaler on one machine (run-local): a local Deployment of ``task-worker`` processes, and its pools."""
