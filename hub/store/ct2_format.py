"""Read a CTranslate2 ``model.bin`` (the faster-whisper format) into numpy arrays.

The CTranslate2 ``model.bin`` format (binary version 4..6, little-endian) is::

    uint32  binary_version
    string  spec_name                 # e.g. "WhisperSpec"
    uint32  spec_revision
    uint32  num_variables
    num_variables x:
        string  name                  # e.g. "encoder/layer_0/self_attention/linear_0/weight"
        uint8   rank
        uint32  dim[rank]
        uint8   dtype_id              # 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
        uint32  num_bytes
        bytes   data[num_bytes]       # row-major
    uint32  num_aliases               # binary_version >= 3
    num_aliases x: string alias, string target

where ``string`` is ``uint16 length`` (including a trailing NUL) followed by the bytes.
The layout was checked against ``ctranslate2/specs/model_spec.py`` (``ModelSpec._serialize``)
and against the faster-whisper base checkpoint.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUPPORTED_BINARY_VERSIONS = range(4, 7)

# Order matches the DataType enum of CTranslate2 (include/ctranslate2/types.h).
_DTYPES: dict[int, str] = {
    0: "float32",
    1: "int8",
    2: "int16",
    3: "int32",
    4: "float16",
    5: "bfloat16",
}


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model of a supported layout."""


@dataclass
class CT2Model:
    """Variables of a CTranslate2 ``model.bin``."""

    binary_version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """The variable ``name``, following aliases."""
        seen = set()
        while name in self.aliases:
            if name in seen:
                raise CT2FormatError(f"alias cycle at {name!r}")
            seen.add(name)
            name = self.aliases[name]
        try:
            return self.variables[name]
        except KeyError:
            raise CT2FormatError(f"variable {name!r} missing from the CTranslate2 model") from None

    def __contains__(self, name: str) -> bool:
        return name in self.variables or name in self.aliases


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` into numpy arrays (bf16 is widened to fp32)."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    off = 0

    def take(fmt: str):
        nonlocal off
        size = struct.calcsize("<" + fmt)
        if off + size > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {off} (wanted {size} more bytes)")
        (value,) = struct.unpack_from("<" + fmt, data, off)
        off += size
        return value

    def take_string() -> str:
        nonlocal off
        n = take("H")
        if n == 0 or off + n > len(data):
            raise CT2FormatError(f"{path}: bad string length {n} at byte {off}")
        raw = bytes(data[off : off + n])
        off += n
        if raw[-1] != 0:
            raise CT2FormatError(f"{path}: string at byte {off - n} is not NUL-terminated")
        return raw[:-1].decode("utf-8")

    version = take("I")
    if version not in SUPPORTED_BINARY_VERSIONS:
        raise CT2FormatError(
            f"{path}: CTranslate2 binary version {version} is not supported "
            f"(expected {SUPPORTED_BINARY_VERSIONS.start}..{SUPPORTED_BINARY_VERSIONS.stop - 1})"
        )
    spec = take_string()
    revision = take("I")
    n_vars = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(n_vars):
        name = take_string()
        rank = take("B")
        shape = tuple(take("I") for _ in range(rank))
        dtype_id = take("B")
        nbytes = take("I")
        if dtype_id not in _DTYPES:
            raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        dtype = _DTYPES[dtype_id]
        np_dtype = np.dtype(np.uint16) if dtype == "bfloat16" else np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        if count * np_dtype.itemsize != nbytes:
            raise CT2FormatError(
                f"{path}: variable {name!r} shape {shape} x {dtype} does not match {nbytes} bytes"
            )
        if off + nbytes > len(data):
            raise CT2FormatError(f"{path}: variable {name!r} truncated")
        arr = np.frombuffer(data, dtype=np_dtype.newbyteorder("<"), count=count, offset=off)
        off += nbytes
        arr = arr.reshape(shape).copy()
        if dtype == "bfloat16":
            arr = _bf16_to_f32(arr)
        variables[name] = arr
    aliases: dict[str, str] = {}
    if off < len(data):
        for _ in range(take("I")):
            alias = take_string()
            aliases[alias] = take_string()
    if off != len(data):
        raise CT2FormatError(f"{path}: {len(data) - off} trailing bytes after the aliases")
    return CT2Model(version, spec, revision, variables, aliases)
