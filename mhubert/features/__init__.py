"""Frame features: MFCC (iteration 1, ``features.mfcc``), SSL layer features (iterations 2-3,
``features.ssl``), and the audio-to-features service the stages use (``features.featurizer``:
``Featurizer`` for a ``FeatureSpec``, from ``features.spec``). Import the submodule you need: this
package imports nothing, so ``features.spec`` stays free of torch for the command line."""
