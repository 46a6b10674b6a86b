"""Kubeflow Pipelines v2 components, one module per stage of the mHuBERT-147 recipe.

Every component is a thin shell: it calls the library's ``mhubert`` CLI or functions (installed in
the image, never pip-installed at run time), passes object-storage URIs as strings and publishes KFP
artifacts (metrics, histograms, loss curves, confusion matrices) for the UI.

Images: named in :mod:`mhubert.images` (``MHUBERT_CPU_IMAGE`` / ``MHUBERT_GPU_IMAGE`` override them at
compile time); the pipeline runs each task that requests a GPU on the GPU image.
``MHUBERT_TARGET_IMAGE`` turns the components into containerized Python
components for ``kfp component build``; it stays unset for lightweight components (which is what
``kfp.local`` runs and what the images support: they contain the package and kfp).
"""

from __future__ import annotations

import os

from mhubert.images import CPU_IMAGE, GPU_IMAGE

__all__ = ["COMPONENT_OPTIONS", "CPU_IMAGE", "GPU_IMAGE", "TARGET_IMAGE"]

TARGET_IMAGE = os.environ.get("MHUBERT_TARGET_IMAGE") or None

COMPONENT_OPTIONS = dict(base_image=CPU_IMAGE, target_image=TARGET_IMAGE, packages_to_install=[],
                         install_kfp_package=False)
