"""How one ClickHouse HTTP request becomes a statement, and who may send it: parsed without the app."""
from __future__ import annotations

import asyncio
import base64
import gzip

import pytest

from services.embedded_store.auth import Credentials
from services.embedded_store.config import StoreSettings
from services.embedded_store.errors import BodyTooLarge, FormRefused, StoreQueryError, UnsupportedEncoding
from services.embedded_store.protocol import parse_request, query_items


def parse(method, items, body=b"", headers=None, *, limit=1 << 20, spool_dir):
    return asyncio.run(parse_request(method, items, headers or {}, body, max_body_bytes=limit, spool_dir=spool_dir))


def chunked(data: bytes, size: int):
    async def chunks():
        for start in range(0, len(data), size):
            yield data[start:start + size]

    return chunks()


def test_get_takes_the_sql_from_the_url_and_sorts_the_parameters(tmp_path):
    parsed = parse("GET", [("query", " SELECT {x:UInt8} "), ("param_x", "7"), ("max_threads", "2"),
                           ("database", "db1"), ("session_id", "s1"), ("session_timeout", "5"),
                           ("close_session", "1"), ("default_format", "JSON"), ("query_id", "q")],
                   spool_dir=tmp_path)
    statement = parsed.statement
    assert statement.sql == "SELECT {x:UInt8}"
    assert statement.params == {"x": "7"}
    assert statement.settings == {"max_threads": "2"}
    assert (statement.database, statement.session_id, statement.session_timeout) == ("db1", "s1", 5.0)
    assert statement.close_session and statement.output_format == "JSON"
    assert parsed.spooled is None


def test_post_sql_is_the_url_query_then_a_newline_then_the_body(tmp_path):
    parsed = parse("POST", [("query", "SELECT 1")], b" UNION ALL SELECT 2\n", spool_dir=tmp_path)
    assert parsed.statement.sql == "SELECT 1\n UNION ALL SELECT 2"
    assert parse("POST", [], b"SELECT 3", spool_dir=tmp_path).statement.sql == "SELECT 3"


def test_insert_data_is_spooled_to_a_file_and_loaded_from_it(tmp_path):
    data = b"1\tone\n2\ttwo\n" * 5000
    body = gzip.compress(b"INSERT INTO t (a, b) FORMAT TabSeparated\n" + data)
    parsed = parse("POST", [("async_insert", "0")], chunked(body, 1000), {"Content-Encoding": "gzip"},
                   spool_dir=tmp_path)
    path = parsed.spooled.path
    assert path.parent == tmp_path and path.read_bytes() == data
    assert parsed.statement.sql == f"INSERT INTO t (a, b) FROM INFILE '{path}' FORMAT TabSeparated"
    assert parsed.statement.settings == {"async_insert": "0"}
    parsed.discard()
    assert not path.exists()


def test_insert_head_in_the_url_and_data_in_the_body(tmp_path):
    parsed = parse("POST", [("query", "INSERT INTO t FORMAT CSV")], b"1,2\n", spool_dir=tmp_path)
    assert parsed.spooled.path.read_bytes() == b"1,2\n"
    parsed.discard()


def test_small_statement_without_a_newline_is_not_spooled(tmp_path):
    parsed = parse("POST", [], b"INSERT INTO t SELECT 1", spool_dir=tmp_path)
    assert parsed.spooled is None and parsed.statement.sql == "INSERT INTO t SELECT 1"


def multipart(fields: list[tuple[str, str]], file: bool = False) -> tuple[bytes, dict[str, str]]:
    parts = [f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n' for name, value in fields]
    if file:
        parts.append('--b\r\nContent-Disposition: form-data; name="t"; filename="t.tsv"\r\n\r\n1\r\n')
    return ("".join(parts) + "--b--\r\n").encode(), {"Content-Type": "multipart/form-data; boundary=b"}


def test_multipart_form_carries_the_query_and_bound_values(tmp_path):
    body, headers = multipart([("query", "SELECT {v:String}"), ("param_v", "x" * 5000)])
    statement = parse("POST", [("max_threads", "1")], body, headers, spool_dir=tmp_path).statement
    assert statement.sql == "SELECT {v:String}"
    assert statement.params == {"v": "x" * 5000}
    assert statement.settings == {"max_threads": "1"}


def test_multipart_file_is_an_external_table_spooled_until_discarded(tmp_path):
    body, headers = multipart([("query", "SELECT * FROM t")], file=True)
    parsed = parse("POST", [("t_structure", "x UInt8"), ("t_format", "TSV"), ("max_threads", "1")], body, headers,
                   spool_dir=tmp_path)
    (table,) = parsed.statement.external
    assert (table.name, table.structure, table.format) == ("t", "x UInt8", "TSV")
    assert table.path.read_bytes() == b"1" and parsed.statement.settings == {"max_threads": "1"}
    parsed.discard()
    assert list(tmp_path.iterdir()) == []
    typed = parse("POST", [("t_types", "UInt8, String")], *multipart([("query", "SELECT 1")], file=True),
                  spool_dir=tmp_path)
    assert typed.statement.external[0].structure == "_1 UInt8, _2 String"
    assert typed.statement.external[0].format == "TabSeparated"
    typed.discard()


def test_external_file_without_a_structure_is_refused_and_not_kept(tmp_path):
    body, headers = multipart([("query", "SELECT 1")], file=True)
    with pytest.raises(FormRefused, match="t_structure"):
        parse("POST", [], body, headers, spool_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_query_body_that_is_not_utf8_keeps_its_bytes(tmp_path):
    statement = parse("POST", [], b"SELECT '\xff'", spool_dir=tmp_path).statement
    assert statement.sql.encode("utf-8", "surrogateescape") == b"SELECT '\xff'"


def test_get_is_read_only_and_carries_the_query_id(tmp_path):
    statement = parse("GET", [("query", "SELECT 1"), ("query_id", "q-1")], spool_dir=tmp_path).statement
    assert statement.readonly and statement.query_id == "q-1"
    assert not parse("POST", [], b"SELECT 1", spool_dir=tmp_path).statement.readonly


def test_bound_values_keep_bytes_that_are_not_utf8_as_escapes():
    items = query_items(b"query=SELECT%20%7Bp%3AString%7D&param_p=%FF%FEa%C3%A9&param_q=a%5Cb")
    assert items == [("query", "SELECT {p:String}"), ("param_p", "\\xff\\xfea\u00e9"), ("param_q", "a\\b")]
    # The query text keeps bytes that are not UTF-8 (a binary literal) as surrogate escapes, which go
    # back to the same bytes for chDB; any other parameter must be UTF-8.
    assert query_items(b"query=SELECT%20%FF") == [("query", "SELECT \udcff")]
    assert query_items(b"query=SELECT%20%FF")[0][1].encode("utf-8", "surrogateescape") == b"SELECT \xff"
    with pytest.raises(UnicodeDecodeError):
        query_items(b"query_id=%FF")


def test_body_over_the_limit_is_refused_and_leaves_no_spool_file(tmp_path):
    body = b"INSERT INTO t FORMAT TSV\n" + b"1\n" * 4000
    with pytest.raises(BodyTooLarge):
        parse("POST", [], chunked(body, 1024), limit=2048, spool_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("method,items,body,headers,error", [
    ("POST", [], b"  \n", {}, StoreQueryError),
    ("GET", [("query", "SELECT 1"), ("session_timeout", "soon")], b"", {}, ValueError),
    ("POST", [], b"SELECT 1", {"Content-Encoding": "compress"}, UnsupportedEncoding),
])
def test_bad_requests_raise_what_the_server_answers_with_bad_arguments(tmp_path, method, items, body, headers,
                                                                       error):
    with pytest.raises(error) as raised:
        parse(method, items, body, headers, spool_dir=tmp_path)
    if error is StoreQueryError:
        assert raised.value.code == 36 and "Empty query" in raised.value.message


class CaseInsensitive(dict):
    def __init__(self, items: dict[str, str]):
        super().__init__({name.lower(): value for name, value in items.items()})


def test_credentials_by_basic_auth_headers_or_url_parameters():
    credentials = Credentials(StoreSettings(_env_file=None, user="u", password="p"))
    basic = "Basic " + base64.b64encode(b"u:p").decode()
    assert credentials.accepts(CaseInsensitive({"Authorization": basic}), {})
    assert credentials.accepts(CaseInsensitive({"X-ClickHouse-User": "u", "X-ClickHouse-Key": "p"}), {})
    assert credentials.accepts({}, {"user": "u", "password": "p"})
    assert not credentials.accepts({}, {"user": "u", "password": "wrong"})
    assert not credentials.accepts(CaseInsensitive({"Authorization": "Basic !!!"}), {})
    assert not credentials.accepts({}, {})
    assert Credentials(StoreSettings(_env_file=None)).accepts({}, {})
