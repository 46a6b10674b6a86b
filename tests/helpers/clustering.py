"""Data for the clustering tests: gaussian mixtures, the fairseq brute-force reference, a tiny
two-language audio corpus, and an exact index fitted on its MFCCs."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np

from mhubert import storage
from mhubert.artifacts import Index, Manifest, ManifestEntry
from mhubert.audio import encode_wav, load
from mhubert.clustering import ClusteringConfig
from mhubert.clustering import index as cindex
from mhubert.constants import SAMPLE_RATE
from mhubert.features.mfcc import mfcc

# A factory string of the paper's shape, small enough to train in about a second on 2 cores.
SMALL_FACTORY = "OPQ4_16,IVF{K}_HNSW32,PQ4x4fsr"

# (lang, dataset, seconds, tone Hz): two languages that sound different, odd lengths on purpose
UTTS = [("en", "a", 0.61, 220), ("en", "a", 0.83, 330), ("en", "b", 0.52, 260),
        ("fr", "a", 0.74, 1200), ("fr", "b", 0.97, 1500), ("fr", "b", 0.45, 1800)]


def mixture(n: int, d: int, k: int, seed: int = 0, spread: float = 4.0) -> np.ndarray:
    """n points of a k-component gaussian mixture in d dims, float32."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((k, d)) * spread
    return (means[rng.integers(0, k, n)] + rng.standard_normal((n, d))).astype(np.float32)


def brute_force(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """fairseq dump_km_label.py: argmin of ||x||² - 2 x·C + ||C||² in float64."""
    x64, c64 = x.astype(np.float64), c.astype(np.float64)
    d = (x64 ** 2).sum(1, keepdims=True) - 2 * x64 @ c64.T + (c64 ** 2).sum(1)[None]
    return d.argmin(1)


def make_corpus(root: str) -> str:
    """Write UTTS as wav under ``root`` and a manifest; returns the manifest URL."""
    rng = np.random.default_rng(0)
    entries = []
    for i, (lang, ds, sec, hz) in enumerate(UTTS):
        n = int(sec * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        wav = 0.3 * np.sin(2 * np.pi * hz * t) + 0.05 * rng.standard_normal(n)
        path = f"{ds}/{lang}/u{i}.wav"
        storage.atomic_write(storage.join(root, "corpus", path), encode_wav(wav.astype(np.float32)))
        entries.append(ManifestEntry(path, n, lang, ds))
    url = storage.join(root, "manifest.tsv")
    Manifest(storage.join(root, "corpus"), entries).write(url)
    return url


def ref_mfcc(manifest: Manifest) -> list[np.ndarray]:
    """torchaudio's Kaldi MFCC (fairseq's call) of every utterance."""
    return [mfcc(load(manifest.url_of(i))).numpy() for i in range(len(manifest))]


def exact_index(root: str, feats: list[np.ndarray], k: int = 4) -> tuple[str, cindex.ClusterIndex]:
    """A flat k-means index on ``feats``, committed under ``root/clu``; returns its index URL."""
    ci = cindex.train(np.concatenate(feats), ClusteringConfig(num_clusters=k, mode="exact", niter=5,
                                                              kmeans_device="cpu"))
    art = Index(storage.join(root, "clu"))
    cindex.save(ci, art)
    art.commit({"mode": "exact"}, settings={"test": k}, inputs={})
    return art.index_url, ci


class HeldAudio:
    """Serves a corpus directory over HTTP on 127.0.0.1, holding back the answer for one file until
    released: a labelling process reading it is then known to be inside its shard."""

    def __init__(self, directory: str, held: str):
        self.requested, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                if self.path.endswith(held):
                    outer.requested.set()
                    outer.release.wait(timeout=60)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=directory))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def sigterm_while_held(cmd: list[str], env: dict, served: HeldAudio, timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd``, send it SIGTERM once it asks ``served`` for the held file, then let the file go;
    returns (exit code, stderr). The child is killed whatever happens."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert served.requested.wait(timeout=timeout), "the child never asked for the held file"
        proc.send_signal(signal.SIGTERM)
        served.release.set()
        _, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, err
