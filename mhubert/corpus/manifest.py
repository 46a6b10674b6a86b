"""Manifests in the mHuBERT-147 fork's format, and building them from a corpus tree or a TSV.

Text format: the audio root on line 1, then one line per utterance
``path<TAB>n_samples<TAB>lang<TAB>dataset`` (path relative to the root, n_samples at 16 kHz).
fairseq's 2-column form (``path<TAB>n_samples``) is read too; lang and dataset then come from the
path ``<dataset>/<lang>/<file>``.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from mhubert import storage
from mhubert.artifacts.manifest import Manifest, ManifestEntry, lang_dataset_from_path
from mhubert.audio import SAMPLE_RATE, info
from mhubert.errors import AudioError, BadInput
from mhubert.plotting import figure_png

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


# -- building ------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    manifest: Manifest
    rejects: list[tuple[str, str]]


def scan_root(root: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Audio files ``<dataset>/<lang>/<file>`` under ``root`` (relative, sorted), and the files
    skipped with why: other extensions inside the layout, audio files outside it. Files directly
    under the root (markers, transcripts) and hidden files are not reported."""
    fs, base = storage.get_fs(root)
    if not fs.isdir(base):
        raise BadInput(f"corpus root not found or not a directory: {root}")
    base = base.rstrip("/")
    found, skipped = [], []
    for p in fs.find(base):
        rel = p[len(base):].lstrip("/") if p.startswith(base) else p
        parts = rel.split("/")
        if len(parts) == 1 or any(x.startswith(".") for x in parts):
            continue
        is_audio = rel.lower().endswith(AUDIO_EXTENSIONS)
        if len(parts) == 3 and is_audio:
            found.append(rel)
        elif len(parts) == 3:
            skipped.append((rel, f"unsupported extension (expected one of {', '.join(AUDIO_EXTENSIONS)})"))
        elif is_audio:
            skipped.append((rel, "not laid out as <dataset>/<lang>/<file>"))
    return sorted(found), sorted(skipped)


def _measure(url: str) -> tuple[int | None, str | None]:
    try:
        i = info(url)
    except (AudioError, BadInput) as e:
        return None, str(e).removeprefix(f"{url}: ")
    except Exception as e:  # noqa: BLE001 - one bad file must never abort the scan
        return None, f"unreadable: {type(e).__name__}: {e}"
    n = i.n_samples(SAMPLE_RATE)
    if n <= 0:
        return None, "zero-length audio (no frames)"
    return n, None


def build(root: str, rows: Sequence[tuple[str, str, str]], min_seconds: float = 2.0,
          max_seconds: float = 30.0, workers: int = 8, progress: bool = True) -> BuildResult:
    """Measure ``rows`` of (relative path, lang, dataset) under ``root``; keep durations in
    [min_seconds, max_seconds]. Everything dropped is returned in ``rejects`` with its reason."""
    if min_seconds < 0 or max_seconds <= 0 or min_seconds > max_seconds:
        raise BadInput(f"bad duration range [{min_seconds}, {max_seconds}] s")
    urls = [storage.join(root, r[0]) for r in rows]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        measured = list(tqdm(ex.map(_measure, urls), total=len(urls), desc="manifest",
                             unit="file", disable=not progress))
    entries: list[ManifestEntry] = []
    rejects: list[tuple[str, str]] = []
    lo, hi = round(min_seconds * SAMPLE_RATE), round(max_seconds * SAMPLE_RATE)
    for (rel, lang, dataset), (n, err) in zip(rows, measured, strict=True):
        if err is not None:
            rejects.append((rel, err))
        elif n < lo:
            rejects.append((rel, f"too short: {n / SAMPLE_RATE:.3f} s < {min_seconds} s"))
        elif n > hi:
            rejects.append((rel, f"too long: {n / SAMPLE_RATE:.3f} s > {max_seconds} s"))
        else:
            entries.append(ManifestEntry(rel, n, lang, dataset))
    return BuildResult(Manifest(root.rstrip("/"), entries), rejects)


def rows_from_root(root: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(rows of (path, lang, dataset), skipped files with reasons) of a corpus tree."""
    found, skipped = scan_root(root)
    rows = []
    for rel in found:
        lang, dataset = lang_dataset_from_path(rel)
        rows.append((rel, lang, dataset))
    return rows, skipped


def rows_from_tsv(url: str) -> tuple[str, list[tuple[str, str, str]]]:
    """(root, rows) from an existing 4- or 2-column TSV; its n_samples are re-measured."""
    m = Manifest.read(url)
    return m.root, [(e.path, e.lang, e.dataset) for e in m.entries]


def plot_hours(stats: dict) -> bytes:
    """PNG bar chart of hours per language (log scale when the range is wide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = stats["languages"]
    names = sorted(langs, key=lambda k: -langs[k]["hours"])
    hours = [langs[k]["hours"] for k in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.4 * len(names) + 2), 3.5))
    ax.bar(names, hours, color="tab:blue")
    ax.set_ylabel("hours")
    ax.set_xlabel("language")
    ax.set_title(f"{stats['total']['hours']:.3g} h in {len(names)} languages")
    if hours and min(hours) > 0 and max(hours) / min(hours) > 100:
        ax.set_yscale("log")
    return figure_png(fig)


def write_outputs(result: BuildResult, out: str) -> None:
    """``manifest.tsv``, ``stats.json``, ``hours_per_language.png``, ``rejects.tsv``, then
    ``_SUCCESS``."""
    storage.remove(storage.join(out, storage.SUCCESS))
    m = result.manifest
    stats = m.stats()
    stats["rejected"] = len(result.rejects)
    m.write(storage.join(out, "manifest.tsv"))
    storage.atomic_write_json(storage.join(out, "stats.json"), stats)
    storage.atomic_write(storage.join(out, "hours_per_language.png"), plot_hours(stats))
    rej = "".join(f"{p}\t{r.replace(chr(9), ' ').replace(chr(10), ' ')}\n" for p, r in result.rejects)
    storage.atomic_write_text(storage.join(out, "rejects.tsv"), "path\treason\n" + rej)
    storage.write_marker(out, {"utterances": len(m), "rejected": len(result.rejects),
                               "hours": stats["total"]["hours"]})


def build_manifest(out: str, root: str | None = None, tsv: str | None = None,
                   min_seconds: float = 2.0, max_seconds: float = 30.0, workers: int = 8,
                   progress: bool = True) -> BuildResult:
    """Scan ``root`` (``<dataset>/<lang>/*``) or read ``tsv``, and publish the manifest under ``out``."""
    if (root is None) == (tsv is None):
        raise BadInput("give exactly one of --root or --tsv")
    skipped: list[tuple[str, str]] = []
    if root is not None:
        rows, skipped = rows_from_root(root)
        base = root
    else:
        base, rows = rows_from_tsv(tsv)
    if not rows:
        raise BadInput(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under "
                       f"{root or tsv} (expected <dataset>/<lang>/<file>)")
    result = build(base, rows, min_seconds, max_seconds, workers=workers, progress=progress)
    result.rejects.extend(skipped)
    write_outputs(result, out)
    log.info("manifest: %d kept, %d rejected -> %s", len(result.manifest), len(result.rejects),
             posixpath.join(out, "manifest.tsv"))
    return result


def read_rejects(url: str) -> list[tuple[str, str]]:
    lines = storage.read_text(url).splitlines()[1:]
    return [tuple(ln.split("\t", 1)) for ln in lines if ln]  # type: ignore[misc]


__all__ = ["ManifestEntry", "Manifest", "BuildResult", "build", "build_manifest", "scan_root",
           "lang_dataset_from_path", "read_rejects"]
