"""ClickHouse's compressed-block framing, as used by `decompress=1` and `compress=1`.

A stream is a sequence of blocks, each::

    16 bytes  checksum: CityHash128 (v1.0.2) of everything after it in the block,
              written as its high 64 bits then its low 64 bits, each little-endian
     1 byte   method: 0x82 LZ4, 0x90 ZSTD, 0x02 none
     4 bytes  compressed size, little-endian, counting the 9 header bytes and the data
     4 bytes  decompressed size, little-endian
     ...      data (compressed size - 9 bytes)

This is the framing of ClickHouse's CompressedWriteBuffer (the same bytes are in a
MergeTree part's .bin files). The checksum of every block is verified, as the real
server does; errors carry ClickHouse's exception codes.
"""

import struct

import lz4.block
import zstandard
from clickhouse_cityhash.cityhash import CityHash128

from .errors import ClickHouseError

CHECKSUM_SIZE = 16
HEADER_SIZE = 9
METHOD_NONE = 0x02
METHOD_LZ4 = 0x82
METHOD_ZSTD = 0x90
# ClickHouse refuses blocks above 1 GiB (DBMS_MAX_COMPRESSED_SIZE).
MAX_BLOCK_SIZE = 0x40000000
# Size of the uncompressed blocks this server writes for `compress=1` responses
# (ClickHouse's DBMS_DEFAULT_BUFFER_SIZE).
RESPONSE_BLOCK_SIZE = 1 << 20

_HEADER = struct.Struct("<BII")
_CHECKSUM = struct.Struct("<QQ")


def checksum(header_and_data: bytes) -> bytes:
    """The 16 checksum bytes ClickHouse writes in front of `header_and_data`."""
    value = CityHash128(header_and_data)
    return _CHECKSUM.pack(value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF)


def encode_block(data: bytes, method: int = METHOD_LZ4) -> bytes:
    """One framed block holding `data`, compressed with `method`."""
    if method == METHOD_LZ4:
        payload = lz4.block.compress(data, store_size=False)
    elif method == METHOD_ZSTD:
        payload = zstandard.ZstdCompressor().compress(data)
    elif method == METHOD_NONE:
        payload = data
    else:
        raise ValueError(f"unsupported compression method {method:#x}")
    header = _HEADER.pack(method, HEADER_SIZE + len(payload), len(data))
    return checksum(header + payload) + header + payload


def encode_stream(data: bytes, method: int = METHOD_LZ4) -> bytes:
    """`data` cut into blocks of at most RESPONSE_BLOCK_SIZE bytes (none for empty data)."""
    view = memoryview(data)
    return b"".join(
        encode_block(bytes(view[i : i + RESPONSE_BLOCK_SIZE]), method)
        for i in range(0, len(data), RESPONSE_BLOCK_SIZE)
    )


def _decode_payload(method: int, payload: bytes, size: int) -> bytes:
    if method == METHOD_LZ4:
        try:
            data = lz4.block.decompress(payload, uncompressed_size=size)
        except lz4.block.LZ4BlockError as err:
            raise ClickHouseError(271, "CANNOT_DECOMPRESS", f"Cannot decompress LZ4-encoded data: {err}") from err
    elif method == METHOD_ZSTD:
        try:
            data = zstandard.ZstdDecompressor().decompress(payload, max_output_size=size)
        except zstandard.ZstdError as err:
            raise ClickHouseError(271, "CANNOT_DECOMPRESS", f"Cannot decompress ZSTD-encoded data: {err}") from err
    elif method == METHOD_NONE:
        data = payload
    else:
        raise ClickHouseError(89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown compression method: {method}")
    if len(data) != size:
        raise ClickHouseError(
            271, "CANNOT_DECOMPRESS", f"Cannot decompress: {len(data)} bytes decoded, {size} expected"
        )
    return data


class BlockDecoder:
    """Incremental decoder of a compressed-block stream.

    Feed it the body as it arrives with `feed`, which returns the decompressed
    contents of every block completed so far; call `finish` at the end of the body
    to reject a truncated last block.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """Decode the blocks completed by `chunk`; a partial block stays buffered."""
        self._buffer += chunk
        out = []
        start = 0
        buffer = self._buffer
        while len(buffer) - start >= CHECKSUM_SIZE + HEADER_SIZE:
            method, compressed_size, size = _HEADER.unpack_from(buffer, start + CHECKSUM_SIZE)
            if compressed_size < HEADER_SIZE or compressed_size > MAX_BLOCK_SIZE or size > MAX_BLOCK_SIZE:
                raise ClickHouseError(
                    271,
                    "CANNOT_DECOMPRESS",
                    f"Too large size_compressed_without_checksum: {compressed_size}. Most likely corrupted data.",
                )
            end = start + CHECKSUM_SIZE + compressed_size
            if len(buffer) < end:
                break
            header_and_data = bytes(buffer[start + CHECKSUM_SIZE : end])
            expected = bytes(buffer[start : start + CHECKSUM_SIZE])
            actual = checksum(header_and_data)
            if actual != expected:
                raise ClickHouseError(
                    40,
                    "CHECKSUM_DOESNT_MATCH",
                    "Checksum doesn't match: corrupted data. Reference: "
                    f"{expected.hex()}. Actual: {actual.hex()}. Size of compressed block: {compressed_size}",
                )
            out.append(_decode_payload(method, header_and_data[HEADER_SIZE:], size))
            start = end
        del buffer[:start]
        return out

    def finish(self) -> None:
        """Raise if the body ended inside a block."""
        if self._buffer:
            raise ClickHouseError(
                33,
                "CANNOT_READ_ALL_DATA",
                f"Cannot read all data: the compressed body ends {len(self._buffer)} bytes into a block",
            )
