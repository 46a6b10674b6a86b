"""Launching training on Kubernetes: the Kubeflow Training Operator PyTorchJob (render, submit, wait)."""
