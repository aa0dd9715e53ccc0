"""The one-command demo's source side: an embedded PostgreSQL with the voucher schema and a
traffic generator that writes like the voucher engine. Outside the product's stages."""
