"""Unit tests of the local ClickHouse's wire-level code: the compressed-block framing
(checked against a block written by ClickHouse itself), exception parsing, and the
split of `INSERT ... FORMAT` from its data.

Run: target/local-clickhouse/venv/bin/python -m unittest discover -s deploy/local
"""

import struct
import unittest

from chserver import framing, request
from chserver.errors import ClickHouseError

# A MergeTree part's a.bin as ClickHouse 26.9 wrote it (column `a String CODEC(LZ4)`,
# 20 rows 'hello ' || toString(number % 7)): one LZ4 block, checksum and all.
CLICKHOUSE_BLOCK = bytes.fromhex(
    "e82ce2215c27c4e095e5d7472a2bf48982350000008c0000007268656c6c6f203007001231070012"
    "320700123307001234070012350700123607000f31003d506c6c6f2035"
)
CLICKHOUSE_BLOCK_DATA = b"".join(b"hello %d" % (n % 7) for n in range(20))


def corrupt(block: bytes, offset: int) -> bytes:
    return block[:offset] + bytes([block[offset] ^ 0x01]) + block[offset + 1 :]


class FramingTest(unittest.TestCase):
    def test_checksum_of_a_block_written_by_clickhouse(self):
        self.assertEqual(framing.checksum(CLICKHOUSE_BLOCK[16:]), CLICKHOUSE_BLOCK[:16])

    def test_decodes_a_block_written_by_clickhouse(self):
        decoder = framing.BlockDecoder()
        self.assertEqual(decoder.feed(CLICKHOUSE_BLOCK), [CLICKHOUSE_BLOCK_DATA])
        decoder.finish()

    def test_header_layout(self):
        block = framing.encode_block(b"abc" * 100, framing.METHOD_LZ4)
        method, compressed, size = struct.unpack_from("<BII", block, 16)
        self.assertEqual((method, compressed, size), (0x82, len(block) - 16, 300))

    def test_round_trip_of_every_method_fed_in_odd_pieces(self):
        payloads = [b"", b"x", bytes(range(256)) * 300, b"claude " * 50_000]
        for method in (framing.METHOD_LZ4, framing.METHOD_ZSTD, framing.METHOD_NONE):
            stream = b"".join(framing.encode_block(p, method) for p in payloads)
            decoder = framing.BlockDecoder()
            out = []
            for i in range(0, len(stream), 997):
                out += decoder.feed(stream[i : i + 997])
            decoder.finish()
            self.assertEqual(out, payloads, hex(method))

    def test_encode_stream_cuts_blocks_of_one_mebibyte(self):
        data = bytes(range(256)) * (framing.RESPONSE_BLOCK_SIZE // 256 * 2 + 1)
        stream = framing.encode_stream(data)
        blocks = framing.BlockDecoder().feed(stream)
        self.assertEqual([len(b) for b in blocks], [framing.RESPONSE_BLOCK_SIZE] * 2 + [256])
        self.assertEqual(b"".join(blocks), data)
        self.assertEqual(framing.encode_stream(b""), b"")

    def assert_error(self, stream: bytes, code: int, name: str):
        decoder = framing.BlockDecoder()
        with self.assertRaises(ClickHouseError) as caught:
            decoder.feed(stream)
            decoder.finish()
        self.assertEqual((caught.exception.code, caught.exception.name), (code, name))
        self.assertTrue(caught.exception.text.startswith(f"Code: {code}. DB::Exception: "))

    def test_a_flipped_bit_anywhere_fails_the_checksum(self):
        for offset in (0, 15, 16, 20, 24, 25, len(CLICKHOUSE_BLOCK) - 1):
            if offset in range(17, 25):
                continue  # a size field: corrupts the framing, checked below
            self.assert_error(corrupt(CLICKHOUSE_BLOCK, offset), 40, "CHECKSUM_DOESNT_MATCH")

    def test_unknown_method(self):
        header = struct.pack("<BII", 0x42, 9 + 3, 3)
        self.assert_error(framing.checksum(header + b"abc") + header + b"abc", 89, "UNKNOWN_COMPRESSION_METHOD")

    def test_sizes_that_cannot_be(self):
        header = struct.pack("<BII", 0x82, 5, 3)
        self.assert_error(framing.checksum(header) + header, 271, "CANNOT_DECOMPRESS")
        header = struct.pack("<BII", 0x82, 0x40000001, 3)
        self.assert_error(framing.checksum(header) + header, 271, "CANNOT_DECOMPRESS")

    def test_a_wrong_decompressed_size(self):
        payload = framing.encode_block(b"hello world")[25:]
        header = struct.pack("<BII", 0x82, 9 + len(payload), 5)
        self.assert_error(framing.checksum(header + payload) + header + payload, 271, "CANNOT_DECOMPRESS")

    def test_a_truncated_stream(self):
        self.assert_error(CLICKHOUSE_BLOCK[:-1], 33, "CANNOT_READ_ALL_DATA")
        self.assert_error(CLICKHOUSE_BLOCK[:10], 33, "CANNOT_READ_ALL_DATA")


class EngineErrorTest(unittest.TestCase):
    def test_code_and_name_from_the_engine_text(self):
        err = ClickHouseError.from_engine(
            RuntimeError(
                "Streaming insert finish failed: Code: 33. DB::Exception: Cannot read all data. "
                "Bytes read: 2. Bytes expected: 4: (at row 1)\n: While executing BinaryRowInputFormat. "
                "(CANNOT_READ_ALL_DATA) (version 26.9.2.1)"
            )
        )
        self.assertEqual((err.code, err.name, err.http_status), (33, "CANNOT_READ_ALL_DATA", 500))
        self.assertTrue(err.text.startswith("Code: 33. DB::Exception: Cannot read all data."))

    def test_statuses(self):
        cases = {"SYNTAX_ERROR": 400, "UNKNOWN_TABLE": 404, "AUTHENTICATION_FAILED": 403, "READONLY": 500}
        for name, status in cases.items():
            self.assertEqual(ClickHouseError(1, name, "x").http_status, status, name)


class SplitInsertTest(unittest.TestCase):
    def test_the_crates_insert(self):
        self.assertEqual(
            request.split_insert("INSERT INTO `calls`(`ts`,`model`) FORMAT RowBinaryWithNamesAndTypes"),
            ("INSERT INTO `calls`(`ts`,`model`)", "RowBinaryWithNamesAndTypes", ""),
        )

    def test_inline_data_after_one_newline(self):
        self.assertEqual(
            request.split_insert("insert into t SETTINGS async_insert=0 format CSV\n\n1,2\n"),
            ("insert into t SETTINGS async_insert=0", "CSV", "\n1,2\n"),
        )
        self.assertEqual(request.split_insert("INSERT INTO t FORMAT CSV 1,2"), ("INSERT INTO t", "CSV", "1,2"))

    def test_format_inside_quotes_is_not_the_clause(self):
        self.assertEqual(
            request.split_insert("INSERT INTO `FORMAT x` ('FORMAT y') FORMAT TSV"),
            ("INSERT INTO `FORMAT x` ('FORMAT y')", "TSV", ""),
        )

    def test_other_queries(self):
        self.assertIsNone(request.split_insert("INSERT INTO t VALUES (1)"))
        self.assertIsNone(request.split_insert("SELECT 1 FORMAT TSV"))
        self.assertIsNone(request.split_insert("INSERTED"))

    def test_output_format(self):
        self.assertEqual(request.output_format("SELECT 1 FORMAT JSONEachRow;", "TabSeparated"), "JSONEachRow")
        self.assertEqual(request.output_format("SELECT 1", "RowBinary"), "RowBinary")


if __name__ == "__main__":
    unittest.main()


class DroppedInsertErrorTest(unittest.TestCase):
    """chdb's streaming inserter drops a violated constraint; the server must not."""

    def test_a_violated_constraint_is_an_error_and_a_good_insert_is_not(self):
        import tempfile

        from chserver.engine import Engine

        engine = Engine(tempfile.mkdtemp())
        try:
            with engine.session() as s:
                s.query("CREATE TABLE t (a UInt32, CONSTRAINT c CHECK a < 100) ENGINE = MergeTree ORDER BY a", "TSV", {})
                with self.assertRaises(ClickHouseError) as caught:
                    s.insert("INSERT INTO t", "TSV", [b"5\n500\n"])
                self.assertEqual(caught.exception.name, "VIOLATED_CONSTRAINT")
                s.insert("INSERT INTO t", "TSV", [b"5\n7\n"])
                rows, _ = s.query("SELECT count() FROM t", "TSV", {})
                self.assertEqual(rows.strip(), b"2")
        finally:
            engine.close()
