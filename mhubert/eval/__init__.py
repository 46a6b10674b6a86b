"""ML-SUPERB-style evaluation of frozen upstreams: ASR and LID probes (``mhubert eval superb``).

Modules, one concern each: :mod:`text` (normalisation, targets), :mod:`corpus` (manifest and
``utterances.tsv``), :mod:`splits` (train/dev/test per language), :mod:`upstream` (frozen features,
cached), :mod:`probe` (the downstream CTC model), :mod:`metrics` (CER, LID accuracy, plots, relative
scores) and :mod:`superb` (the stage). Nothing heavy is imported here.
"""
