"""How the store server reads ClickHouse HTTP requests: parameters, insert heads, body encodings."""
from __future__ import annotations

import gzip
import zlib

import lz4.frame
import pytest
import zstandard

from services.embedded_store.codec import ENCODERS, body_decoder, exception_block, native_header, response_encoding
from services.embedded_store.errors import StoreQueryError, UnsupportedEncoding
from services.embedded_store.protocol import Statement, match_insert, split_params


def test_parameters_split_into_settings_binds_and_transport():
    params = split_params([
        ("query", "SELECT {x:UInt8}"), ("database", "default"), ("session_id", "s1"), ("param_x", "7"),
        ("max_threads", "2"), ("client_protocol_version", "54405"), ("wait_end_of_query", "1"),
        ("enable_http_compression", "1"), ("query_id", "q1"),
    ])
    assert params.binds == {"x": "7"}
    assert params.settings == {"max_threads": "2"}
    assert params.transport["session_id"] == "s1"
    assert "client_protocol_version" in params.transport


def test_insert_head_is_found_and_data_starts_after_one_newline():
    body = b"INSERT INTO photos (`id`, `vector`) FORMAT Native\n\x09\x02data"
    head = match_insert(body)
    assert head is not None
    assert head.target == "photos (`id`, `vector`)"
    assert head.format == "Native"
    # 0x09 (a tab) is the first data byte here (nine columns) and must not be skipped.
    assert body[head.data_offset:] == b"\x09\x02data"
    assert head.sql_from_file("/dev/shm/x'y") == (
        "INSERT INTO photos (`id`, `vector`) FROM INFILE '/dev/shm/x\\'y' FORMAT Native")


@pytest.mark.parametrize("sql", [
    b"INSERT INTO t VALUES (1, 'FORMAT Native')",
    b"INSERT INTO t SELECT * FROM s FORMAT Native\n",
    b"SELECT 1 FORMAT Native\n",
    b"CREATE TABLE t (x UInt8) ENGINE Memory",
])
def test_statements_that_are_not_data_inserts(sql):
    assert match_insert(sql) is None


def test_statement_output_format_and_state():
    assert Statement("SELECT 1\n FORMAT Native").output_format == "Native"
    assert Statement("CREATE TABLE t (x UInt8) ENGINE Memory").output_format == "TabSeparated"
    assert Statement("SELECT 1", default_format="JSON").output_format == "JSON"
    assert Statement("  -- note\nSET max_threads = 1").is_stateful
    assert Statement("use other").is_stateful
    assert Statement("CREATE TEMPORARY TABLE t (x UInt8)").is_stateful
    assert not Statement("SELECT 'SET x = 1'").is_stateful


def decode_in_pieces(encoding: str, payload: bytes, piece: int = 7) -> bytes:
    decoder = body_decoder(encoding)
    out = [decoder.feed(payload[i:i + piece]) for i in range(0, len(payload), piece)]
    out.append(decoder.finish())
    return b"".join(out)


BLOCKS = [b"first block " * 50, b"second block " * 40, b"third"]


@pytest.mark.parametrize("encoding,compress", [
    ("lz4", lz4.frame.compress),
    ("zstd", lambda block: zstandard.ZstdCompressor().compress(block)),
    ("gzip", gzip.compress),
    ("deflate", zlib.compress),
    ("identity", lambda block: block),
])
def test_concatenated_frames_decode_to_the_original_body(encoding, compress):
    payload = b"".join(compress(block) for block in BLOCKS)
    assert decode_in_pieces(encoding, payload) == b"".join(BLOCKS)


def test_unknown_encoding_is_refused():
    with pytest.raises(UnsupportedEncoding, match="compress"):
        body_decoder("compress")


def test_engine_errors_keep_the_server_text_and_code():
    error = StoreQueryError.from_engine(RuntimeError("chdb: Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)"))
    assert error.code == 60
    assert error.message.startswith("Code: 60. DB::Exception: Unknown table")
    unexpected = StoreQueryError.from_engine(RuntimeError("boom"))
    assert unexpected.code == 1001 and "boom" in unexpected.message


def test_reads_are_streamed_and_everything_else_is_not():
    assert Statement("SELECT 1").is_read
    assert Statement("-- c\n  with x AS (SELECT 1) SELECT * FROM x").is_read
    assert Statement("(SELECT 1) UNION ALL (SELECT 2)").is_read
    assert not Statement("SHOW TABLES").is_read and not Statement("DESCRIBE TABLE t").is_read  # chDB refuses
    assert not Statement("INSERT INTO t SELECT * FROM s").is_read
    assert not Statement("WITH 5 AS x INSERT INTO t SELECT number + x FROM numbers(3)").is_read
    assert not Statement("CREATE TABLE t ENGINE Memory AS SELECT 1").is_read
    assert not Statement("SELECT 1 INTO OUTFILE '/tmp/x'").is_read
    assert not Statement("SET max_threads = 1").is_read


def test_response_is_compressed_only_when_asked_twice_and_in_the_clients_order():
    assert response_encoding("lz4,zstd,br,gzip,deflate", "1") == "lz4"
    assert response_encoding("br, zstd;q=0.9, gzip", "1") == "zstd"
    assert response_encoding("gzip;q=0, deflate", "1") == "deflate"
    assert response_encoding("lz4", None) is None  # ClickHouse needs enable_http_compression=1 too
    assert response_encoding("br", "1") is None
    assert response_encoding(None, "1") is None


@pytest.mark.parametrize("encoding,decompress", [
    ("lz4", lz4.frame.decompress),
    ("zstd", lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data)),
    ("gzip", gzip.decompress),
    ("deflate", zlib.decompress),
])
def test_streamed_response_is_one_stream_that_decodes_block_by_block(encoding, decompress):
    encoder = ENCODERS[encoding]()
    pieces = [encoder.encode(block) for block in BLOCKS]
    assert all(pieces[1:])  # every block is flushed as it goes, not held back to the end
    assert decompress(b"".join(pieces) + encoder.finish()) == b"".join(BLOCKS)
    empty = ENCODERS[encoding]()
    assert decompress(empty.finish()) == b""


def test_error_inside_a_begun_result_uses_clickhouse_exception_tag_form():
    from clickhouse_connect.driver import transform
    block = exception_block("abc123", "Code: 395. DB::Exception: boom. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)")
    assert block.startswith(b"__exception__\r\nabc123\r\n")
    assert block.endswith(b" abc123\r\n__exception__\r\n")
    assert "Code: 395" in transform.extract_exception_with_tag(b"partial rows" + block, "abc123")


def test_native_header_block_for_an_empty_result():
    assert native_header([("id", "UInt32"), ("v", "Array(Float32)")]) == (
        b"\x02\x00" + b"\x02id" + b"\x06UInt32" + b"\x01v" + b"\x0eArray(Float32)")
    assert native_header([("x" * 200, "String")]).startswith(b"\x01\x00\xc8\x01")


def test_kill_query_by_id_is_recognised_only_in_its_exact_form():
    from services.embedded_store.kills import kill_target

    assert kill_target("KILL QUERY WHERE query_id = 'q-1'") == "q-1"
    assert kill_target("kill query where query_id='it\\'s' SYNC FORMAT JSON") == "it's"
    assert kill_target("KILL QUERY WHERE user = 'x'") is None
    assert kill_target("KILL QUERY WHERE query_id = 'a' OR 1") is None
