"""Kubeflow pipelines of the mHuBERT-147 recipe."""
