"""Kubeflow Pipelines v2 components, one module per stage of the mHuBERT-147 recipe.

Every component is a thin shell: it runs the library's ``mhubert`` commands in its own process
(:func:`components._common.mhubert`; the package is installed in the image, never pip-installed at
run time), finds the run's objects through :mod:`mhubert.artifacts` (``RunLayout(root)``), passes
object-storage URIs as strings and publishes KFP artifacts (metrics, histograms, loss curves,
confusion matrices) for the UI. Stages decide themselves whether a committed result may be reused
(``on_change``: ``stop`` | ``resume`` | ``force``, :func:`mhubert.artifacts.decide`), so a KFP cache
hit can never stand in for that rule: pipeline runs turn KFP's cache off.

Images: :mod:`mhubert.images` (``MHUBERT_CPU_IMAGE`` / ``MHUBERT_GPU_IMAGE`` at compile time).
``MHUBERT_TARGET_IMAGE`` turns the components into containerized Python components for ``kfp
component build``; it stays unset for lightweight components (which is what ``kfp.local`` runs and
what the images support: they contain the package and kfp).
"""

from __future__ import annotations

import os

from mhubert.images import CPU_IMAGE

TARGET_IMAGE = os.environ.get("MHUBERT_TARGET_IMAGE") or None

COMPONENT_OPTIONS = dict(base_image=CPU_IMAGE, target_image=TARGET_IMAGE, packages_to_install=[],
                         install_kfp_package=False)
