"""The HTTP service: the Voucherify-compatible activity API, analytics JSON, health, metrics and
the dashboard, over the store in `query`."""
