"""``mhubert corpus import`` of an N-row release: wall time and peak RSS of the importing process.

    python benchmarks/bench_import.py --rows 30000000 --dir /tmp/bench-import

The release is FLEURS-shaped (``<src>/<lang_REGION>/train.tsv``, headerless, with ``num_samples``
and transcripts; audio under ``audio/train/``), one of the formats whose metadata carries durations,
imported with ``trust_metadata`` so that no audio is opened: what is measured is the import path
itself (reading the TSV, the rows, language codes, filters, the manifest, ``utterances.tsv``,
``rejects.tsv``, the stats). ``--languages`` folders share the rows; in each, every 100,000th
row names a clip that is missing and every 50,000th has a duration out of range (the rejects).

N empty audio files do not fit a benchmark disk, so the audio folders are listed by a filesystem
(``benchfs://``, local files otherwise) that yields the N clip names one by one as a paged object
store listing would; what the importer keeps of that listing is counted. The metadata is written
by a child process first and the import runs in another, so the peak RSS reported is the
importer's alone; ``baseline_rss_gb`` is that process after its imports, before the import.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

MISSING_EVERY, BAD_DURATION_EVERY = 100_000, 50_000
LOCALES = ("en_us", "sv_se", "fr_fr", "sw_ke", "yo_ng", "ast_es", "cy_gb", "rw_rw")


def _name(i: int) -> str:
    return f"{i:010d}.wav"


def write(src: str, rows: int, languages: int) -> None:
    """FLEURS's headerless train.tsv per language: id, file_name, raw_transcription,
    transcription, transcription_chars, num_samples, gender."""
    import numpy as np

    rng = np.random.default_rng(0)
    per = [rows // languages + (1 if k < rows % languages else 0) for k in range(languages)]
    start = 0
    for k, count in enumerate(per):
        d = os.path.join(src, LOCALES[k], "audio", "train")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(src, LOCALES[k], "train.tsv"), "w", encoding="utf-8") as f:
            for a in range(0, count, 1_000_000):
                b = min(a + 1_000_000, count)
                n = rng.integers(32_000, 480_000, size=b - a).tolist()
                lines = []
                for j, x in zip(range(a, b), n, strict=True):
                    i = start + j
                    if j % BAD_DURATION_EVERY == BAD_DURATION_EVERY - 1:
                        x = 1_000_000  # 62.5 s: too long
                    text = f"utterance {i} of the synthetic release in {LOCALES[k]}"
                    lines.append(f"{i}\t{_name(i)}\t{text}\t{text.lower()}\t{'|'.join(text[:8])}\t{x}\tMALE\n")
                f.write("".join(lines))
        start += count


def _listing_fs(src: str, rows: int, languages: int):
    """The ``benchfs://`` filesystem: local, except that ``<locale>/audio/train`` lists the N clip
    names (every ``MISSING_EVERY``-th left out), yielded one by one."""
    import fsspec
    from fsspec.implementations.local import LocalFileSystem

    per = [rows // languages + (1 if k < rows % languages else 0) for k in range(languages)]
    starts = {LOCALES[k]: (sum(per[:k]), per[k]) for k in range(languages)}

    class ListingFS(LocalFileSystem):
        protocol = ("benchfs",)

        @classmethod
        def _strip_protocol(cls, path):
            path = str(path)
            if path.startswith("benchfs://"):
                path = path[len("benchfs://"):]
            return super()._strip_protocol(path)

        def find(self, path, *args, **kwargs):
            path = self._strip_protocol(path).rstrip("/")
            locale = os.path.basename(os.path.dirname(os.path.dirname(path)))
            if path.endswith("/audio/train") and locale in starts:
                a, count = starts[locale]
                return (f"{path}/{_name(a + j)}" for j in range(count)
                        if j % MISSING_EVERY != MISSING_EVERY // 2)
            return super().find(path, *args, **kwargs)

    fsspec.register_implementation("benchfs", ListingFS, clobber=True)


def measure(src: str, out: str, rows: int, languages: int) -> dict:
    from mhubert.corpus.importer import import_corpus

    _listing_fs(src, rows, languages)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    res = import_corpus("fleurs", f"benchfs://{src}", out, trust_metadata=True, min_seconds=1.0,
                        max_seconds=30.0, on_change="force")
    wall = time.perf_counter() - t0
    return {"rows": rows, "kept": len(res.manifest), "rejected": res.stats["rejected"],
            "languages": len(res.manifest.languages), "import_s": round(wall, 1),
            "rows_per_s": round(rows / wall), "baseline_rss_gb": round(base, 3),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "manifest_gb": round(os.path.getsize(os.path.join(out, "manifest.tsv")) / 2**30, 3),
            "utterances_gb": round(os.path.getsize(os.path.join(out, "utterances.tsv")) / 2**30, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--languages", type=int, default=4, choices=range(1, len(LOCALES) + 1))
    ap.add_argument("--dir", default="/tmp/bench-import")
    ap.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--import-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    src = os.path.join(args.dir, f"fleurs-{args.rows}-{args.languages}")
    out = os.path.join(args.dir, f"corpus-{args.rows}-{args.languages}")
    if args.write_only:
        write(src, args.rows, args.languages)
        return
    if args.import_only:
        shutil.rmtree(out, ignore_errors=True)  # a committed corpus of the same settings would be reused
        print(json.dumps(measure(src, out, args.rows, args.languages)))
        return
    common = ["--rows", str(args.rows), "--languages", str(args.languages), "--dir", args.dir]
    if not os.path.exists(os.path.join(src, LOCALES[args.languages - 1], "train.tsv")):
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, *common, "--write-only"], check=True)
        print(f"wrote {src} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    subprocess.run([sys.executable, __file__, *common, "--import-only"], check=True)


if __name__ == "__main__":
    main()
