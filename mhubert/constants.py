"""Constants every layer shares; each is defined here and nowhere else.

Frame rates are not constants: they follow from a model's conv stack (``HubertConfig.frame_rate``,
its total stride) and, for MFCC targets, from the 10 ms hop (``mhubert.features.mfcc``).
"""

SAMPLE_RATE = 16000  # Hz: every waveform in the project, as mHuBERT-147 and fairseq HuBERT
