"""Decode a wandb offline log (`run-<id>.wandb`) without a network or a wandb server.

wandb >= 0.19 ships no Python reader for its offline logs, so this reads the file format
directly: a 7-byte file header (":W&B", magic 0xBEE1, version 0), then LevelDB-style blocks of
32 KiB holding chunked records (7-byte chunk header: crc32, length, chunk type), each record a
serialized `wandb.proto.wandb_internal_pb2.Record`. Only the protobuf classes come from wandb.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path

from harness.errors import HarnessError

_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
# Keys wandb adds to a run's config for its own bookkeeping; not part of the user's config.
_INTERNAL_KEYS = ("_wandb",)


def _chunk_crc(chunk_type: int, data: bytes) -> int:
    # wandb seeds crc32 with the chunk type byte (its LevelDB variant), not Castagnoli+mask.
    return zlib.crc32(data, zlib.crc32(bytes([chunk_type]))) & 0xFFFFFFFF


def iter_record_bytes(path: str | Path):
    """Yield the raw bytes of each record in a .wandb file, reassembling chunked records."""
    raw = Path(path).read_bytes()
    if len(raw) < _FILE_HEADER.size:
        raise HarnessError(f"{path}: too short to be a wandb log")
    ident, magic, version = _FILE_HEADER.unpack_from(raw, 0)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise HarnessError(f"{path}: not a wandb offline log (bad header)")
    pos, pending = _FILE_HEADER.size, b""
    while pos + _CHUNK_HEADER.size <= len(raw):
        room = _BLOCK - pos % _BLOCK
        if room < _CHUNK_HEADER.size:  # block trailer too small for a header: zero padding
            pos += room
            continue
        crc, length, ctype = _CHUNK_HEADER.unpack_from(raw, pos)
        if ctype == 0 and length == 0:  # preallocated / zero tail of a file still being written
            break
        data = raw[pos + _CHUNK_HEADER.size : pos + _CHUNK_HEADER.size + length]
        if len(data) < length or _chunk_crc(ctype, data) != crc:
            break  # truncated tail of an interrupted run: keep what was complete
        pos += _CHUNK_HEADER.size + length
        if ctype == _FULL:
            yield data
        elif ctype == _FIRST:
            pending = data
        elif ctype == _MIDDLE:
            pending += data
        elif ctype == _LAST:
            yield pending + data
            pending = b""


def _set_item(target: dict, item) -> None:
    keys = list(item.nested_key) or [item.key]
    node = target
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = json.loads(item.value_json)


def _remove_item(target: dict, item) -> None:
    keys = list(item.nested_key) or [item.key]
    node = target
    for k in keys[:-1]:
        node = node.get(k, {})
    node.pop(keys[-1], None)


def _apply(target: dict, record) -> None:
    for item in record.update:
        _set_item(target, item)
    for item in record.remove:
        _remove_item(target, item)


def read_wandb_log(path: str | Path) -> tuple[dict, dict, list[dict]]:
    """Decode a .wandb offline log into (config, summary, history).

    config: the run's config as logged (wandb's own `_wandb` bookkeeping key removed).
    summary: the final summary; explicit summary updates win over last-logged history values,
    which is wandb's own rule. history: one dict per logged step, in order.
    """
    from wandb.proto import wandb_internal_pb2 as pb  # imported late: wandb is slow to import

    config: dict = {}
    summary: dict = {}
    history: list[dict] = []
    for data in iter_record_bytes(path):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            _apply(config, rec.run.config)
            _apply(summary, rec.run.summary)
        elif kind == "config":
            _apply(config, rec.config)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _set_item(row, item)
            history.append(row)
            summary.update({k: v for k, v in row.items() if not k.startswith("_")})
        elif kind == "summary":
            _apply(summary, rec.summary)
    for key in _INTERNAL_KEYS:
        config.pop(key, None)
    summary = {k: v for k, v in summary.items() if not k.startswith("_")}
    return config, summary, history


def _exit_record(path: str | Path):
    """wandb's final `exit` record if the log ends in one, else None."""
    from wandb.proto import wandb_internal_pb2 as pb

    last = None
    for data in iter_record_bytes(path):
        last = data
    if last is None:
        return None
    rec = pb.Record()
    rec.ParseFromString(last)
    return rec.exit if rec.WhichOneof("record_type") == "exit" else None


def is_complete(path: str | Path) -> bool:
    """True once the log holds wandb's final `exit` record: the run finished and was flushed."""
    return _exit_record(path) is not None


def exit_status(path: str | Path) -> int | None:
    """The run's exit code from its exit record (0: clean), None if the log has none."""
    rec = _exit_record(path)
    return None if rec is None else int(rec.exit_code)


def wait_complete(path: str | Path, timeout_s: float = 60.0) -> bool:
    """Wait until the log is complete.

    wandb's `run.finish()` can return before its writer has flushed the last partial 32 KiB block
    (seen on a loaded CI machine: the final ~30 history rows were missing when read at once).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if Path(path).exists() and is_complete(path):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
