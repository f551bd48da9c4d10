"""Read the metadata header of a GGUF file (name, license, context length, chat template) without
loading the model. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md (little-endian:
magic ``GGUF``, version, tensor count, key/value count, then typed key/value pairs)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from appliance.errors import ModelError

__all__ = ["read_gguf_metadata"]

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Keys worth keeping; large arrays (the vocabulary) are skipped over.
_WANTED = ("general.", "tokenizer.chat_template", ".context_length")
_MAX_STRING = 16 << 20


def _read(fh: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = fh.read(size)
    if len(data) != size:
        raise EOFError
    return struct.unpack(fmt, data)[0]


def _read_string(fh: BinaryIO) -> str:
    length = _read(fh, "<Q")
    if length > _MAX_STRING:
        raise ValueError(f"string of {length} bytes in the header")
    data = fh.read(length)
    if len(data) != length:
        raise EOFError
    return data.decode("utf-8", errors="replace")


def _skip_or_read(fh: BinaryIO, kind: int, keep: bool) -> Any:
    if kind in _SCALARS:
        return _read(fh, _SCALARS[kind])
    if kind == _STRING:
        return _read_string(fh)
    if kind == _ARRAY:
        item_kind = _read(fh, "<I")
        count = _read(fh, "<Q")
        if item_kind in _SCALARS and not keep:
            fh.seek(struct.calcsize(_SCALARS[item_kind]) * count, 1)
            return None
        items = [_skip_or_read(fh, item_kind, keep) for _ in range(count)]
        return items if keep else None
    raise ValueError(f"unknown value type {kind}")


def read_gguf_metadata(path: Path) -> dict[str, Any]:
    """Return the interesting header keys of a GGUF file.

    Raises:
        ModelError: the file is not GGUF or its header is damaged.
    """
    try:
        with path.open("rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelError(f"{path} is not a GGUF model file (it does not start with the GGUF magic)")
            version = _read(fh, "<I")
            if version not in (2, 3):
                raise ModelError(f"{path} is GGUF version {version}; this appliance reads versions 2 and 3")
            _read(fh, "<Q")  # tensor count
            kv_count = _read(fh, "<Q")
            found: dict[str, Any] = {"gguf.version": version}
            for _ in range(kv_count):
                key = _read_string(fh)
                kind = _read(fh, "<I")
                keep = key.startswith(_WANTED[0]) or key == _WANTED[1] or key.endswith(_WANTED[2])
                value = _skip_or_read(fh, kind, keep)
                if keep:
                    found[key] = value
            return found
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from exc
    except (EOFError, ValueError, struct.error) as exc:
        raise ModelError(f"{path} has a damaged GGUF header ({exc or 'file ends early'})") from exc
