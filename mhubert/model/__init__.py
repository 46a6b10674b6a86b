"""The HuBERT model: config, encoder, pretraining head, span masking, checkpoint conversion."""

from mhubert.model.config import HubertConfig
from mhubert.model.convert import load_hf, load_model, load_pretrain_model, save_hf
from mhubert.model.fairseq import load_fairseq, save_fairseq
from mhubert.model.hubert import HubertModel, HubertPretrainModel, hubert_base, hubert_tiny
from mhubert.model.masking import compute_span_mask

__all__ = ["HubertConfig", "HubertModel", "HubertPretrainModel", "compute_span_mask", "hubert_base",
           "hubert_tiny", "load_fairseq", "load_hf", "load_model", "load_pretrain_model", "save_fairseq",
           "save_hf"]
