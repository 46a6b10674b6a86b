"""Launching training on Kubernetes: a Kubeflow Trainer v2 TrainJob (default) or a v1 PyTorchJob
(render, submit, follow node 0's log, wait, delete by policy)."""
