"""Record encoding: msgspec msgpack, a format version and an xxhash checksum.

A record is ``b"TP" + format (1 byte) + xxh64(payload) (8 bytes, little
endian) + payload`` where the payload is the msgpack encoding of the value.
The bytes never depend on which `_fastcore` core wrote them.
"""

from __future__ import annotations

import struct

import msgspec
import xxhash

from .._errors import StorageError, VersionError

FORMAT = 1
_MAGIC = b"TP"
_HEADER = struct.Struct("<2sBQ")  # magic, format, checksum
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_value(value: object, *, what: str = "state") -> bytes:
    """msgpack bytes of *value*; `StorageError` naming it when it cannot be encoded."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as e:
        msg = f"cannot store {what} {value!r}: {e}; dump_state must return msgpack/JSON-able data"
        raise StorageError(msg) from e


def encode_record(value: object, *, what: str = "state") -> bytes:
    """A record: header (magic, format, checksum) + the msgpack payload."""
    payload = encode_value(value, what=what)
    return _HEADER.pack(_MAGIC, FORMAT, xxhash.xxh64_intdigest(payload)) + payload


def decode_record(record: bytes, *, key: str = "?") -> object:
    """The value of a record; `StorageError` on corruption, `VersionError` on a newer format."""
    if len(record) < _HEADER.size:
        msg = f"corrupt stored record for key {key!r}: {len(record)} bytes, shorter than a header"
        raise StorageError(msg)
    magic, fmt, checksum = _HEADER.unpack_from(record)
    if magic != _MAGIC:
        msg = f"corrupt stored record for key {key!r}: bad magic {magic!r}"
        raise StorageError(msg)
    if fmt > FORMAT:
        msg = f"stored record for key {key!r} has format {fmt}; this trio_peeper reads up to {FORMAT}"
        raise VersionError(msg)
    payload = record[_HEADER.size :]
    if xxhash.xxh64_intdigest(payload) != checksum:
        msg = f"corrupt stored record for key {key!r}: checksum mismatch"
        raise StorageError(msg)
    try:
        return _decoder.decode(payload)
    except msgspec.DecodeError as e:
        msg = f"corrupt stored record for key {key!r}: {e}"
        raise StorageError(msg) from e


def part_name(key: object) -> bytes:
    """The part name of a top-level key of dumped data (its msgpack bytes)."""
    return _encoder.encode(key)


def part_key(name: bytes) -> object:
    """The top-level key a part name stands for."""
    return _decoder.decode(name)
