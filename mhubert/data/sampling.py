"""Two-level (language, then dataset) up-sampling of mHuBERT-147.

With n the utterance count (or hours) of each group:
``p_l ∝ (n_l / N)^α`` normalised over languages, ``p_{d|l} ∝ (n_{l,d} / n_l)^β`` normalised within
each language, and the joint ``p_{l,d} = p_l · p_{d|l}``. α < 1 flattens the language distribution
(low-resource languages are up-sampled); β does the same for datasets inside a language.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from mhubert.errors import BadInput

Key = tuple[str, str]


def _check_exponents(alpha: float, beta: float) -> None:
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not (0.0 <= float(v) <= 1.0) or not np.isfinite(v):
            raise BadInput(f"{name} must be in [0, 1], got {v}")


def two_level_probabilities(counts: Mapping[Key, float], alpha: float = 0.7,
                            beta: float = 0.9) -> dict[Key, float]:
    """Joint sampling probability of every (lang, dataset); groups with count 0 get 0."""
    _check_exponents(alpha, beta)
    if not counts:
        raise BadInput("no (lang, dataset) groups to sample from")
    for k, v in counts.items():
        if not np.isfinite(v) or v < 0:
            raise BadInput(f"count of {k} must be a finite non-negative number, got {v}")
    n_lang: dict[str, float] = defaultdict(float)
    for (lang, _), v in counts.items():
        n_lang[lang] += float(v)
    total = sum(n_lang.values())
    if total <= 0:
        raise BadInput("all (lang, dataset) counts are zero")
    lang_w = {lang: (n / total) ** alpha for lang, n in n_lang.items() if n > 0}
    z = sum(lang_w.values())
    p_lang = {lang: w / z for lang, w in lang_w.items()}
    out: dict[Key, float] = {}
    for lang in n_lang:
        groups = [(k, float(v)) for k, v in counts.items() if k[0] == lang]
        if n_lang[lang] <= 0:
            out.update({k: 0.0 for k, _ in groups})
            continue
        dw = {k: (v / n_lang[lang]) ** beta if v > 0 else 0.0 for k, v in groups}
        zd = sum(dw.values())
        out.update({k: p_lang[lang] * w / zd for k, w in dw.items()})
    return out


Groups = tuple[np.ndarray, Sequence[Key]]  # (group id of every utterance, key of each group)


def _group(keys: Sequence[Key] | Groups) -> dict[Key, np.ndarray]:
    """Indices of each (lang, dataset) group. ``keys``: the (lang, dataset) of every utterance, or
    ``(group ids, group keys)`` as ``Manifest.group_ids()`` gives (vectorised, for large corpora)."""
    if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], np.ndarray):
        gid, names = keys
        dtype = np.int32 if len(gid) < 2**31 else np.int64  # halves the memory of large corpora
        order = np.argsort(gid, kind="stable").astype(dtype)
        bounds = np.searchsorted(gid[order], np.arange(len(names) + 1))
        present = [g for g in range(len(names)) if bounds[g + 1] > bounds[g]]
        present.sort(key=lambda g: order[bounds[g]])  # first-seen order, as for a list of keys
        return {(str(names[g][0]), str(names[g][1])): order[bounds[g]:bounds[g + 1]].copy()
                for g in present}
    groups: dict[Key, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault((str(k[0]), str(k[1])), []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def _size(keys: Sequence[Key] | Groups) -> int:
    if isinstance(keys, tuple) and len(keys) == 2 and isinstance(keys[0], np.ndarray):
        return len(keys[0])
    return len(keys)


def _take(rng: np.random.Generator, idx: np.ndarray, m: int) -> np.ndarray:
    """m indices from ``idx``: permute-and-concatenate when m > len, permute-and-truncate else."""
    if m <= 0:
        return np.empty(0, dtype=idx.dtype)
    reps = -(-m // len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(reps)])[:m]


class TwoLevelSampler:
    """Per-epoch resampling of a manifest's utterances by the two-level distribution.

    ``keys[i]`` is the (lang, dataset) of utterance i (or ``(group ids, group keys)``, see
    ``Manifest.group_ids``); ``weights[i]`` (e.g. hours) make the counts the probabilities are
    computed from (utterance counts when None, as the mHuBERT-147 trainer).
    """

    def __init__(self, keys: Sequence[Key] | Groups, alpha: float = 0.7, beta: float = 0.9,
                 seed: int = 0, weights: Sequence[float] | None = None):
        n = _size(keys)
        if n == 0:
            raise BadInput("TwoLevelSampler needs at least one utterance")
        if weights is not None and len(weights) != n:
            raise BadInput(f"weights has {len(weights)} values for {n} keys")
        _check_exponents(alpha, beta)
        self.n = n
        self.seed = int(seed)
        self.groups = _group(keys)
        counts: dict[Key, float] = defaultdict(float)
        if weights is None:
            for k, idx in self.groups.items():
                counts[k] = float(len(idx))
        else:
            w = np.asarray(weights, dtype=np.float64)
            for k, idx in self.groups.items():
                counts[k] = float(w[idx].sum())
        self.probabilities = two_level_probabilities(counts, alpha, beta)
        self._keys = list(self.groups)
        self._p = np.array([self.probabilities[k] for k in self._keys], dtype=np.float64)
        self._p /= self._p.sum()

    def group_sizes(self, epoch: int) -> dict[Key, int]:
        """How many of the epoch's N draws go to each group (multinomial over the joint p)."""
        rng = np.random.default_rng(self.seed + int(epoch))
        m = rng.multinomial(self.n, self._p)
        return dict(zip(self._keys, (int(x) for x in m), strict=True))

    def epoch(self, epoch: int) -> np.ndarray:
        """(N,) int64 utterance indices for ``epoch``, shuffled; same epoch -> same indices."""
        rng = np.random.default_rng(self.seed + int(epoch))
        sizes = rng.multinomial(self.n, self._p)
        parts = [_take(rng, self.groups[k], int(m)) for k, m in zip(self._keys, sizes, strict=True)]
        out = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return rng.permutation(out).astype(np.int64, copy=False)


def budgeted_sample(keys: Sequence[Key] | Groups, durations_s: Sequence[float],
                    budget_seconds: float, alpha: float = 0.7, beta: float = 0.9,
                    seed: int = 0) -> np.ndarray:
    """Indices (sorted, with repeats) whose durations add up to about ``budget_seconds``.

    Probabilities come from hours per group; group (l, d) gets ``p_{l,d} · budget`` seconds: the
    whole group repeated as many times as fits, then random utterances of it (without replacement)
    until the remainder is filled, as mHuBERT-147's probability_sampling_from_size_estimation.py.
    """
    if _size(keys) != len(durations_s):
        raise BadInput(f"{len(durations_s)} durations for {_size(keys)} keys")
    if _size(keys) == 0:
        raise BadInput("budgeted_sample needs at least one utterance")
    if not np.isfinite(budget_seconds) or budget_seconds <= 0:
        raise BadInput(f"budget must be a positive number of seconds, got {budget_seconds}")
    dur = np.asarray(durations_s, dtype=np.float64)
    if (dur < 0).any() or not np.isfinite(dur).all():
        raise BadInput("durations must be finite and non-negative")
    groups = _group(keys)
    hours = {k: float(dur[idx].sum()) for k, idx in groups.items()}
    probs = two_level_probabilities(hours, alpha, beta)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for k, idx in groups.items():
        target = probs[k] * budget_seconds
        total = hours[k]
        if target <= 0 or total <= 0:
            continue
        full = int(target // total)
        out.extend([idx] * full)
        rest = target - full * total
        perm = rng.permutation(idx)
        n_rest = int(np.searchsorted(np.cumsum(dur[perm]), rest, side="right"))
        out.append(perm[:n_rest])
    if not out:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.concatenate(out)).astype(np.int64)
