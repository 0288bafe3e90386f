"""The ClickHouse HTTP interface as a real server answers it, beyond the calls the project makes:
read-only GET, complete results in every format, summaries, external data, errors that leave
the connection clean, bound values and query text that are bytes, an error after the result began
(see conftest.py for the server under test)."""
from __future__ import annotations

import json
import secrets
from urllib.parse import urlparse

import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, StreamFailureError
from clickhouse_connect.driver.external import ExternalData
from clickhouse_connect.driver.summary import QuerySummary
from clickhouse_connect.driver.transform import extract_exception_with_tag

ROWS = 300_000  # several blocks and several MiB in every format below
# Fails at its 101st row, a second after its first rows went out (clickhouse-connect's own test query).
SLOW_FAILURE = "SELECT sleepEachRow(0.01), throwIf(number = 100) FROM numbers(200)"


@pytest.fixture(scope="module")
def http(store_url):
    """A plain HTTP client on the server, with the URL's credentials, for what clickhouse-connect hides."""
    parsed = urlparse(store_url)
    auth = (parsed.username or "default", parsed.password or "") if parsed.username else None
    base = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 8123}/"
    with httpx.Client(base_url=base, auth=auth, timeout=60) as client:
        yield client


def test_get_is_read_only_as_on_clickhouse(client, http, database):
    client.command(f"CREATE TABLE {database}.kept (x UInt8) ENGINE = MergeTree ORDER BY x")
    client.command(f"INSERT INTO {database}.kept VALUES (1)")
    for sql in (f"DROP TABLE {database}.kept", f"INSERT INTO {database}.kept VALUES (2)",
                f"CREATE TABLE {database}.made (x UInt8) ENGINE = Memory"):
        answer = http.get("", params={"query": sql})
        assert answer.status_code == 500 and answer.headers["X-ClickHouse-Exception-Code"] == "164"
        assert "READONLY" in answer.text and "POST" in answer.text
    assert client.query(f"SELECT x FROM {database}.kept").result_rows == [(1,)]
    assert not client.command(f"EXISTS TABLE {database}.made")
    read = http.get("", params={"query": f"SELECT count() FROM {database}.kept"})
    assert read.status_code == 200 and read.text == "1\n"


def test_large_results_are_complete_in_every_format(client):
    sql = f"SELECT number, toString(number) AS s FROM numbers({ROWS})"
    assert client.query_arrow(sql).num_rows == ROWS
    assert len(client.query_df_arrow(sql)) == ROWS
    document = json.loads(client.raw_query(sql + " FORMAT JSON"))
    assert document["rows"] == ROWS and len(document["data"]) == ROWS
    csv = client.raw_query(sql + " FORMAT CSVWithNames").decode().splitlines()
    assert csv[0] == '"number","s"' and len(csv) == ROWS + 1 and csv.count(csv[0]) == 1
    tsv = client.raw_query(sql + " FORMAT TSVWithNamesAndTypes").decode().splitlines()
    assert tsv[:2] == ["number\ts", "UInt64\tString"] and len(tsv) == ROWS + 2
    lines = client.raw_query(sql + " FORMAT JSONEachRow").decode().splitlines()
    assert len(lines) == ROWS and json.loads(lines[-1])["s"] == str(ROWS - 1)


def test_statements_that_return_nothing_name_no_format(client, http, database):
    summary = client.command(f"CREATE TABLE {database}.quiet (x UInt8) ENGINE = Memory")
    assert isinstance(summary, QuerySummary)
    created = http.post("", params={"query": f"DROP TABLE {database}.quiet"})
    assert created.status_code == 200 and "X-ClickHouse-Format" not in created.headers
    selected = http.post("", content=b"SELECT 1 FORMAT JSONEachRow")
    assert selected.headers["X-ClickHouse-Format"] == "JSONEachRow"


@pytest.mark.server_may_differ(reason="ClickHouse before 24.x does not parse WITH in front of INSERT")
def test_with_in_front_of_insert_select_writes(client, database):
    client.command(f"CREATE TABLE {database}.shifted (x UInt64) ENGINE = MergeTree ORDER BY x")
    summary = client.command(f"WITH 5 AS shift INSERT INTO {database}.shifted SELECT number + shift FROM numbers(3)")
    assert isinstance(summary, QuerySummary) and summary.written_rows == 3
    assert client.query(f"SELECT x FROM {database}.shifted ORDER BY x").result_rows == [(5,), (6,), (7,)]


def test_summary_counts_rows_read_not_rows_returned(client):
    result = client.query("SELECT count() FROM numbers(100000) WHERE number % 7 = 0")
    assert result.result_rows == [(14286,)]
    assert int(result.summary["read_rows"]) == 100_000 and int(result.summary["read_bytes"]) == 800_000


def test_external_data_tables(client):
    named = ExternalData(data=b"1\tone\n2\ttwo\n", file_name="labels.tsv", structure="id UInt32, name String",
                         fmt="TabSeparated")
    assert client.query("SELECT name FROM labels WHERE id = 2", external_data=named).result_rows == [("two",)]
    typed = ExternalData(data=b"3,x\n4,y\n", file_name="pairs.csv", types="UInt8,String", fmt="CSV")
    typed.add_file(data=b"[1,2]\n", file_name="lists", structure="v Array(UInt8)", fmt="TSV")
    sql = "SELECT sum(_1), (SELECT sum(arraySum(v)) FROM lists) FROM pairs"
    assert client.query(sql, external_data=typed).result_rows == [(7, 3)]


def test_an_error_early_in_a_result_is_an_error_and_the_next_answers_are_right(client):
    # The error comes after some blocks, within the first MiB of the answer.
    failing = "SELECT number, throwIf(number = 50000) FROM numbers(100000) SETTINGS max_block_size = 1000"
    for call in (client.query_arrow, client.query_df, client.query):
        with pytest.raises(DatabaseError, match="395"):
            call(failing)
        assert client.query("SELECT 7 AS seven").result_rows == [(7,)]
        assert client.query_arrow("SELECT 8 AS eight").column("eight").to_pylist() == [8]


def test_a_bound_string_is_bytes(http):
    # 0xFF 0xFE are not UTF-8; a String holds them as they are.
    answer = http.get("?query=SELECT%20hex(%7Bp:String%7D),%20length(%7Bp:String%7D)&param_p=%FF%FEa%C3%A9")
    assert answer.status_code == 200 and answer.text == "FFFE61C3A9\t5\n"


def test_a_query_whose_text_is_not_utf8_reads_its_bytes(connect, http):
    # A String literal is bytes: 0xFF 0xFE in the query text are the value, as they were sent.
    answer = http.post("", content=b"SELECT '\xff\xfe' AS v FORMAT RowBinary")
    assert answer.status_code == 200 and answer.content == b"\x02\xff\xfe"
    in_url = http.get("?query=SELECT%20hex('%FF%FEa')")
    assert in_url.status_code == 200 and in_url.text == "FFFE61\n"
    # clickhouse-connect's binary parameters ($name$) put the raw bytes into the query text.
    client = connect()
    assert client.query("SELECT hex($bin$) AS h", parameters={"$bin$": b"\x00\xff\xfe\x80"}).result_rows == [
        ("00FFFE80",)]


@pytest.mark.server_may_differ(reason="the exception tag is ClickHouse 25.11+; older servers and MyScale append "
                                      "plain text after the rows")
def test_an_error_after_the_result_began_comes_under_the_exception_tag(connect, http):
    # Not waiting for the end of the query, the server sends the rows as they come: the status (200)
    # is sent, so the error follows the rows inside the body, framed by the response's tag.
    with http.stream("POST", "", params={"max_block_size": "1", "wait_end_of_query": "0"},
                     content=SLOW_FAILURE.encode()) as answer:
        body = answer.read()
    tag = answer.headers["X-ClickHouse-Exception-Tag"]
    assert answer.status_code == 200 and len(tag) == 16 and tag.isalnum() and tag.islower()
    assert body.startswith(b"0\t0\n") and body.rstrip().endswith(b"__exception__")
    message = extract_exception_with_tag(body, tag)
    assert message and "Code: 395" in message and "Value passed to 'throwIf' function is non-zero" in message
    # clickhouse-connect tells it from a dropped connection: a StreamFailureError with the server's words.
    client = connect(show_clickhouse_errors=True)
    settings = {"max_block_size": 1, "wait_end_of_query": 0}
    with pytest.raises(StreamFailureError, match="Value passed to 'throwIf' function is non-zero"):
        client.query(SLOW_FAILURE, settings=settings).result_set  # noqa: B018 - reading it raises
    with pytest.raises(StreamFailureError, match="Code: 395"):
        with client.query_rows_stream(SLOW_FAILURE, settings=settings) as rows:
            for _ in rows:
                pass
    assert client.command("SELECT 1") == 1


def test_waiting_for_the_end_of_the_query_makes_a_late_error_a_status(http):
    answer = http.post("", params={"max_block_size": "1", "wait_end_of_query": "1"}, content=SLOW_FAILURE.encode())
    assert answer.status_code == 500 and answer.headers["X-ClickHouse-Exception-Code"] == "395"
    assert answer.text.startswith("Code: 395.") and "__exception__" not in answer.text


def test_kill_query_by_the_query_id_the_client_sent(connect):
    reader, killer = connect(), connect()
    query_id = f"conformance-kill-{secrets.token_hex(4)}"
    with reader.raw_stream("SELECT number FROM system.numbers", fmt="TabSeparated",
                           settings={"query_id": query_id}) as stream:
        chunks = iter(stream)
        assert next(chunks).startswith(b"0\n")
        report = killer.query(f"KILL QUERY WHERE query_id = '{query_id}' SYNC")
        assert [row[1] for row in report.result_rows] == [query_id]
        received = 0
        try:
            for chunk in chunks:  # system.numbers never ends: only the kill ends this loop
                received += len(chunk)
                assert received < 200 * 1024 * 1024, "the query went on after KILL QUERY"
        except DatabaseError:  # a server may end the body with the cancel error, or just end it
            pass
