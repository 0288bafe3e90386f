"""The embedded store: a process that owns a chDB data folder and serves the ClickHouse HTTP
interface that clickhouse-connect uses (run it with `python -m services.embedded_store`)."""
