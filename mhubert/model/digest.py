"""The identity of a model's weights: what a units index record names the model it was fit on by.

``publish`` records it beside the index it fits on the served model's features; the service
recomputes it on the model it loads and refuses an index recorded for other weights.
"""

from __future__ import annotations

import hashlib
from typing import Any


def model_digest(model: Any) -> str:
    """sha256 of the config and weights (a :class:`mhubert.model.HubertModel`)."""
    h = hashlib.sha256(repr(sorted(model.cfg.to_dict().items())).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
