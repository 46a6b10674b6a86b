"""Frame features for clustering: MFCC (iteration 1) and SSL layer features (``features.ssl``,
imported on demand so MFCC users do not load the model code)."""

from mhubert.features.mfcc import mfcc, mfcc_batch, num_frames

__all__ = ["mfcc", "mfcc_batch", "num_frames"]
