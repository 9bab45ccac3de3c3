"""A discrete-event simulation of the worker autoscaler against KEDA and a plain HPA (python -m benchmarks.scaling)."""
