"""The ClickHouse store: its schema, the event writer and the reads; the HTTP API beside it in
`query.api`."""
