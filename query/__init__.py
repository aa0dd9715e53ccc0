"""The ClickHouse store (schema, writer, reads) and the Voucherify-compatible activity API."""
