"""Open Inference Protocol v2 tensors: JSON and the binary tensor data extension, both directions.

A request is JSON, or (binary extension) a JSON header of ``Inference-Header-Content-Length`` bytes
followed by the inputs' raw bytes, in input order, each input saying its size in
``parameters.binary_data_size``. Row-major, little-endian; a BYTES element is a 4-byte little-endian
length and its bytes. Outputs go back binary when the request asks (``outputs[i].parameters.binary_data``
or the request parameter ``binary_data_output``). Everything wrong with a request is :class:`OipError`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER = "Inference-Header-Content-Length"

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


class OipError(Exception):
    """A protocol-level error: answered ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.headers = message, status, headers or {}


@dataclass
class InputTensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray            # numeric array of ``shape``, or an object array of bytes for BYTES
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    id: str | None
    parameters: dict
    inputs: list[InputTensor]
    outputs: list[dict]

    def input(self, *names: str) -> InputTensor:
        for t in self.inputs:
            if t.name in names:
                return t
        raise OipError(f"request has no input named {' or '.join(names)}")

    def wants_binary(self, name: str) -> bool:
        for o in self.outputs:
            if o.get("name") == name:
                return bool((o.get("parameters") or {}).get("binary_data", False))
        return bool(self.parameters.get("binary_data_output", False))

    def requested(self, available: list[str]) -> list[str]:
        """Output names to return: those asked for (each must exist), else all available."""
        names = [o.get("name") for o in self.outputs]
        for n in names:
            if n not in available:
                raise OipError(f"unknown output {n!r}; this model has {', '.join(available)}")
        return names or available


def deserialize_bytes(buf: bytes) -> list[bytes]:
    """BYTES tensor data: repeated (uint32 LE length, bytes)."""
    out, pos = [], 0
    while pos < len(buf):
        if pos + 4 > len(buf):
            raise OipError("truncated BYTES tensor data")
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise OipError("truncated BYTES tensor data")
        out.append(bytes(buf[pos:pos + n]))
        pos += n
    return out


def serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def _count(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _tensor(spec: Any, raw: bytes | None) -> InputTensor:
    if not isinstance(spec, dict):
        raise OipError("each input must be an object with name, shape, datatype and data")
    name, dt, shape = spec.get("name"), spec.get("datatype"), spec.get("shape")
    if not isinstance(name, str) or dt not in DTYPES:
        raise OipError(f"input {name!r}: datatype must be one of {', '.join(DTYPES)}, got {dt!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise OipError(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    n = _count(shape)
    params = spec.get("parameters") or {}
    if raw is not None:
        if dt == "BYTES":
            items = deserialize_bytes(raw)
            if len(items) != n:
                raise OipError(f"input {name!r}: {len(items)} BYTES elements for shape {shape}")
            data = np.empty(n, dtype=object)
            data[:] = items
        else:
            itemsize = np.dtype(DTYPES[dt]).itemsize
            if len(raw) != n * itemsize:
                raise OipError(f"input {name!r}: {len(raw)} bytes of binary data, shape {shape} of {dt} "
                               f"needs {n * itemsize}")
            data = np.frombuffer(raw, dtype=np.dtype(DTYPES[dt]).newbyteorder("<")).astype(DTYPES[dt])
        return InputTensor(name, dt, shape, data.reshape(shape), params)
    if "data" not in spec:
        raise OipError(f"input {name!r} has no data (and no binary_data_size)")
    flat = np.asarray(spec["data"], dtype=object).reshape(-1) if dt == "BYTES" else None
    try:
        if dt == "BYTES":
            data = np.empty(flat.size, dtype=object)
            data[:] = [x.encode() if isinstance(x, str) else bytes(x) for x in flat]
        else:
            data = np.asarray(spec["data"], dtype=DTYPES[dt]).reshape(-1)
    except (TypeError, ValueError) as e:
        raise OipError(f"input {name!r}: data does not fit datatype {dt}: {e}") from None
    if data.size != n:
        raise OipError(f"input {name!r}: {data.size} values for shape {shape}")
    return InputTensor(name, dt, shape, data.reshape(shape), params)


def parse_request(body: bytes, header_length: str | None) -> InferRequest:
    """An infer request from its body and the ``Inference-Header-Content-Length`` header (or None)."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise OipError(f"{HEADER} {header_length!r} does not fit a body of {len(body)} bytes")
        head, rest = body[: int(header_length)], memoryview(body)[int(header_length):]
    else:
        head, rest = body, memoryview(b"")
    try:
        req = json.loads(head or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise OipError(f"request header is not JSON: {e}") from None
    if not isinstance(req, dict) or not isinstance(req.get("inputs"), list) or not req["inputs"]:
        raise OipError("request must be a JSON object with a non-empty 'inputs' list")
    inputs, pos = [], 0
    for spec in req["inputs"]:
        size = ((spec.get("parameters") or {}).get("binary_data_size") if isinstance(spec, dict) else None)
        raw = None
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(rest):
                raise OipError(f"binary_data_size {size!r} runs past the {len(rest)} bytes of binary data")
            raw = bytes(rest[pos:pos + size])
            pos += size
        inputs.append(_tensor(spec, raw))
    if pos != len(rest):
        raise OipError(f"{len(rest) - pos} bytes of binary data belong to no input")
    params = req.get("parameters") or {}
    outputs = req.get("outputs") or []
    if not isinstance(params, dict) or not isinstance(outputs, list):
        raise OipError("'parameters' must be an object and 'outputs' a list")
    return InferRequest(req.get("id"), params, inputs, outputs)


def encode_response(req: InferRequest, model: str, version: str,
                    outputs: list[tuple[str, str, np.ndarray]]) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an infer response with ``outputs`` = [(name, datatype, array)]."""
    names = req.requested([n for n, _, _ in outputs])
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": []}
    if req.id is not None:
        head["id"] = req.id
    blobs: list[bytes] = []
    for name, dt, arr in outputs:
        if name not in names:
            continue
        out: dict[str, Any] = {"name": name, "datatype": dt, "shape": list(arr.shape)}
        if dt == "BYTES":
            items = [x if isinstance(x, bytes) else str(x).encode() for x in arr.reshape(-1).tolist()]
            if req.wants_binary(name):
                blob = serialize_bytes(items)
            else:
                out["data"] = [x.decode("utf-8", "replace") for x in items]
        else:
            arr = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[dt]).newbyteorder("<"))
            if req.wants_binary(name):
                blob = arr.tobytes()
            else:
                out["data"] = arr.reshape(-1).tolist()
        if "data" not in out:
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        head["outputs"].append(out)
    header = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                       HEADER: str(len(header))}
