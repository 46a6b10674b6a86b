"""Durations from audio headers, read concurrently over fsspec, streamed and resumable.

One ranged request per file in most cases: the first 64 KiB. A file shorter than that is measured
whole (soundfile); a longer WAV from its RIFF ``fmt``/``data`` chunks (plus a one-byte read at the
end of its declared data, to catch a truncated file); a longer FLAC from its STREAMINFO (soundfile
on the head); anything else (mp3, ogg/opus, whose length is only known at the end of the stream)
is fetched and measured whole, never decoded to samples beyond what soundfile needs to count
frames. Reads run in a thread pool (s3fs serves the threads from its event loop, so requests
overlap); results are written in batches under a checkpoint folder, and a rerun with the same file
list skips the finished batches.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from mhubert import storage
from mhubert.audio import AudioError, info_bytes
from mhubert.constants import SAMPLE_RATE
from mhubert.errors import BadInput

log = logging.getLogger(__name__)

HEAD_BYTES = 65536
BATCH = 4096


def _wav_layout(head: bytes) -> tuple[int, int, int, int] | None:
    """(block_align, sample_rate, data offset, data size) of a PCM WAV from its first chunks."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block, rate = 12, None, None
    while pos + 8 <= len(head):
        cid, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt " and pos + 24 <= len(head):
            rate = int.from_bytes(head[pos + 12:pos + 16], "little")
            block = int.from_bytes(head[pos + 20:pos + 22], "little")
        elif cid == b"data":
            return (block, rate, pos + 8, n) if block and rate else None
        pos += 8 + n + (n & 1)
    return None


def _wav_samples(fs, path: str, head: bytes) -> int | None:
    """16 kHz length of a WAV longer than the head, checking that its data is really there by
    reading the last declared byte (a ranged GET: no HEAD request, one more round trip)."""
    lay = _wav_layout(head)
    if lay is None:
        return None
    block, rate, pos, n = lay
    if n == 0 or n >= 0x7FFF0000:  # streaming placeholder: the data runs to the end of the file
        n = fs.size(path) - pos
    else:
        try:
            last = fs.cat_file(path, start=pos + n - 1, end=pos + n)
        except (OSError, ValueError):
            last = b""
        if len(last) != 1:
            raise AudioError(f"truncated audio: the WAV header declares {n} bytes of samples but the "
                             "file ends before them")
    if n // block <= 0:
        raise AudioError("zero-length audio (no frames)")
    return int(round((n // block) * SAMPLE_RATE / rate))


def measure(fs, path: str) -> int:
    """Length in 16 kHz samples of the audio file ``path`` on ``fs`` (raises AudioError/BadInput)."""
    try:
        try:
            head = fs.cat_file(path, start=0, end=HEAD_BYTES)
        except FileNotFoundError:
            raise
        except OSError:  # S3 answers a range request on an empty object with 416
            if fs.size(path) == 0:
                raise AudioError("empty file (0 bytes)") from None
            raise
        if len(head) < HEAD_BYTES:
            return info_bytes(head).n_samples(SAMPLE_RATE)
        if head[:4] == b"RIFF":
            n = _wav_samples(fs, path, head)
            if n is not None:
                return n
        if head[:4] == b"fLaC":
            try:
                i = sf.info(io.BytesIO(head))
                if 0 < i.frames < 2**62 and i.samplerate > 0:
                    return int(round(i.frames * SAMPLE_RATE / i.samplerate))
            except (sf.LibsndfileError, RuntimeError):
                pass
        return info_bytes(fs.cat_file(path)).n_samples(SAMPLE_RATE)
    except FileNotFoundError as e:
        raise BadInput("audio file not found") from e


def _measure_safe(fs, path: str) -> tuple[int, str]:
    try:
        n = measure(fs, path)
    except (AudioError, BadInput) as e:
        return -1, str(e)
    except Exception as e:  # noqa: BLE001 - one bad file must never abort the scan
        return -1, f"unreadable: {type(e).__name__}: {e}"
    if n <= 0:
        return -1, "zero-length audio (no frames)"
    return n, ""


def _checkpoint_dir(base: str, urls: Sequence[str]) -> str:
    h = hashlib.sha256()
    for u in urls:
        h.update(u.encode() + b"\n")
    return storage.join(base, h.hexdigest()[:16])


def read_headers(urls: Sequence[str], workers: int = 32, checkpoint: str | None = None,
                 batch: int = BATCH, progress: Callable[[int, int], None] | None = None
                 ) -> tuple[np.ndarray, dict[int, str]]:
    """``(n_samples (int64, -1 where unreadable), {index: reason})`` of ``urls``.

    ``checkpoint``: a folder (hidden, inside the output) where finished batches are kept; a rerun
    over the same list reads them back instead of the files."""
    n = np.full(len(urls), -1, dtype=np.int64)
    why: dict[int, str] = {}
    ck = _checkpoint_dir(checkpoint, urls) if checkpoint else None
    def one(i: int) -> tuple[int, str]:
        fs, p = storage.get_fs(urls[i])  # fsspec caches the filesystem instances
        return _measure_safe(fs, p)

    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
        for k, a in enumerate(range(0, len(urls), batch)):
            b = min(a + batch, len(urls))
            part = storage.join(ck, f"part-{k:06d}.tsv") if ck else None
            if part and storage.exists(part):
                for line in storage.read_text(part).splitlines():
                    i, v, r = line.split("\t", 2)
                    n[int(i)] = int(v)
                    if r:
                        why[int(i)] = r
            else:
                res = list(ex.map(one, range(a, b)))
                lines = []
                for i, (v, r) in zip(range(a, b), res, strict=True):
                    n[i] = v
                    if r:
                        why[i] = r
                    lines.append(f"{i}\t{v}\t{r.replace(chr(9), ' ').replace(chr(10), ' ')}\n")
                if part:
                    storage.atomic_write_text(part, "".join(lines))
            done = b
            if progress:
                progress(done, len(urls))
    return n, why


def sequential_info(urls: Sequence[str]) -> list[int]:
    """The baseline the benchmark compares with: ``soundfile.info`` on each file in turn."""
    out = []
    for u in urls:
        fs, p = storage.get_fs(u)
        with fs.open(p, "rb") as f:
            i = sf.info(f)
        out.append(int(round(i.frames * SAMPLE_RATE / i.samplerate)))
    return out


def log_mismatch(path: str, meta: int, decoded: int) -> None:
    log.warning("duration mismatch over 1%%: %s metadata %d samples, header %d", path, meta, decoded)
