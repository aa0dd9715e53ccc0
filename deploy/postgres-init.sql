-- Prepare the voucher engine's database for voucher-activity (SPEC §3).
--
-- Run it with psql (15 or later, for \getenv) as a superuser or as the owner of the voucher
-- tables, in the voucher engine's database, once the engine has created its schema:
--
--   VOUCHER_ACTIVITY_PASSWORD='<secret>' psql -v ON_ERROR_STOP=1 -d voucherengine -f postgres-init.sql
--
-- Safe to run again (it also resets the role's password). The server itself must run with
-- wal_level = logical (ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL).

\set ON_ERROR_STOP on
\getenv voucher_activity_password VOUCHER_ACTIVITY_PASSWORD

-- segment_customer has no primary key. Once a publication publishes its deletes, PostgreSQL
-- rejects the engine's own DELETEs on it (DELETE /v1/segments/{id}) unless the table has a
-- replica identity; FULL is the only one available without a key.
ALTER TABLE segment_customer REPLICA IDENTITY FULL;

-- A login role that may stream the WAL and read the tracked tables (for the initial snapshot
-- and the start-up checks), and nothing else: it never writes to the voucher database.
SELECT 'CREATE ROLE voucher_activity'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'voucher_activity') \gexec
ALTER ROLE voucher_activity WITH LOGIN REPLICATION PASSWORD :'voucher_activity_password';
GRANT CONNECT ON DATABASE :"DBNAME" TO voucher_activity;
GRANT USAGE ON SCHEMA public TO voucher_activity;
GRANT SELECT ON
    tenant, customer, campaign, voucher, redemption, redemption_rollback, publication,
    publication_vouchers, orders, order_item, segment, segment_customer, voucher_transaction,
    customer_event
TO voucher_activity;

-- Only the tables' owner may publish them, so the publication is created here; the sidecar
-- then finds it and uses it as it is. Handing it to voucher_activity lets the sidecar check
-- it at start-up; a new owner needs CREATE on the database at that moment (unless a
-- superuser runs this), so CREATE is granted for the ALTER only.
SELECT 'CREATE PUBLICATION voucher_activity FOR TABLE
    tenant, customer, campaign, voucher, redemption, redemption_rollback, publication,
    publication_vouchers, orders, order_item, segment, segment_customer, voucher_transaction,
    customer_event'
WHERE NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'voucher_activity') \gexec
GRANT CREATE ON DATABASE :"DBNAME" TO voucher_activity;
ALTER PUBLICATION voucher_activity OWNER TO voucher_activity;
REVOKE CREATE ON DATABASE :"DBNAME" FROM voucher_activity;
