"""Kubeflow Pipelines v2 components, one module per stage of the mHuBERT-147 recipe.

Every component is a thin shell: it calls the library's ``mhubert`` CLI or functions (installed in
the image, never pip-installed at run time), passes object-storage URIs as strings and publishes KFP
artifacts (metrics, histograms, loss curves, confusion matrices) for the UI.

Images: ``MHUBERT_CPU_IMAGE`` / ``MHUBERT_GPU_IMAGE`` (environment at compile time) name the images
built from images/. ``MHUBERT_TARGET_IMAGE`` turns the components into containerized Python
components for ``kfp component build``; it stays unset for lightweight components (which is what
``kfp.local`` runs and what the images support: they contain the package and kfp).
"""

from __future__ import annotations

import os

CPU_IMAGE = os.environ.get("MHUBERT_CPU_IMAGE", "ghcr.io/mhubert/mhubert-cpu:0.1.0")
GPU_IMAGE = os.environ.get("MHUBERT_GPU_IMAGE", "ghcr.io/mhubert/mhubert-gpu:0.1.0")
TARGET_IMAGE = os.environ.get("MHUBERT_TARGET_IMAGE") or None

COMPONENT_OPTIONS = dict(base_image=CPU_IMAGE, target_image=TARGET_IMAGE, packages_to_install=[],
                         install_kfp_package=False)
