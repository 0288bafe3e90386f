"""The embedded store server, run as a process and driven over HTTP by clickhouse-connect."""
