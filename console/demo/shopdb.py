"""The demo shop's database: roles, schema and data, and the statements the services run.

Roles (created by the stack's superuser over the unix socket):

- ``app`` owns the shop tables; the two services connect as ``app`` (scram over TCP).
- ``checkout`` is what the DB faults connect as (lock holders, idle transactions, connection
  hogs, the long report). pg_stat_statements does not track it, so that a lock waiter that ran
  for a minute does not stay the "slowest statement" after the fix.
- ``ic_console`` is the console's role: pg_monitor (see every session), pg_signal_backend
  (cancel/terminate others) and membership of ``app`` (so a runbook may create the missing
  index on the shop's tables).

The slow-queries scenario is a real missing index: the product listing counts each product's
reviews with a correlated subquery; with ``reviews_product_id_idx`` that is an index lookup per
product, without it a sequential scan of ``reviews`` per product.
"""

from __future__ import annotations

DATABASE = "shop"
APP_ROLE = "app"
FAULT_ROLE = "checkout"
CONSOLE_ROLE = "ic_console"

MISSING_INDEX = "reviews_product_id_idx"
#: The fix the slow-queries runbook applies (docs/demo-api.md).
CREATE_INDEX_SQL = f"CREATE INDEX IF NOT EXISTS {MISSING_INDEX} ON reviews (product_id)"
DROP_INDEX_SQL = f"DROP INDEX IF EXISTS {MISSING_INDEX}"

CATEGORIES = ("coffee", "tea", "mugs", "grinders", "kettles", "filters", "gifts", "snacks")
PRODUCTS = 4000
REVIEWS = 400_000
#: Inventory rows the lock-contention scenario fights over.
HOT_SKU = "SKU-1001"

# Run as the superuser in database "postgres".
ROLES_SQL = f"""
DO $$BEGIN
  CREATE ROLE {APP_ROLE} LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END$$;
DO $$BEGIN
  CREATE ROLE {FAULT_ROLE} LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END$$;
DO $$BEGIN
  CREATE ROLE {CONSOLE_ROLE} LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL; END$$;
GRANT pg_monitor, pg_signal_backend, {APP_ROLE} TO {CONSOLE_ROLE};
GRANT {APP_ROLE} TO {FAULT_ROLE};
ALTER ROLE {FAULT_ROLE} SET pg_stat_statements.track = 'none';
"""

CREATE_DATABASE_SQL = f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}"

# Run as the superuser in database "shop" at every start (idempotent): what the slow-queries
# runbook (slow-database-queries) needs of the console's role beyond pg_monitor — log the slow
# statements (ALTER SYSTEM on that one parameter, PostgreSQL 15+), reload the configuration, and
# reset the statistics of the statements it fixed.
CONSOLE_GRANTS_SQL = f"""
GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO {CONSOLE_ROLE};
GRANT EXECUTE ON FUNCTION pg_stat_statements_reset TO {CONSOLE_ROLE};
DO $$BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    EXECUTE 'GRANT ALTER SYSTEM ON PARAMETER log_min_duration_statement TO {CONSOLE_ROLE}';
  END IF;
END$$;
"""

# Run as the superuser in database "shop", once, right after CREATE DATABASE.
SCHEMA_SQL = f"""
SET ROLE {APP_ROLE};
CREATE TABLE products (
    id          int PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    category    text NOT NULL,
    price_cents int  NOT NULL
);
CREATE TABLE inventory (
    sku       text PRIMARY KEY REFERENCES products (sku),
    on_hand   int NOT NULL,
    reserved  int NOT NULL DEFAULT 0
);
CREATE TABLE reviews (
    id         bigint PRIMARY KEY,
    product_id int NOT NULL,
    rating     smallint NOT NULL,
    body       text NOT NULL
);
CREATE TABLE customers (
    id    int PRIMARY KEY,
    email text NOT NULL UNIQUE
);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    sku         text NOT NULL,
    quantity    int NOT NULL,
    total_cents int NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE TABLE sync_log (
    id          bigserial PRIMARY KEY,
    provider    text NOT NULL,
    record      text NOT NULL,
    status      text NOT NULL,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_log_provider_status_idx ON sync_log (provider, status);

INSERT INTO products
SELECT g, 'SKU-' || (1000 + g), 'Product ' || g,
       (ARRAY{list(CATEGORIES)!r})[1 + g % {len(CATEGORIES)}], 500 + (g * 37) % 9000
FROM generate_series(1, {PRODUCTS}) g;
INSERT INTO inventory SELECT sku, 1000, 0 FROM products;
INSERT INTO reviews
SELECT g, 1 + (g::bigint * 7919) % {PRODUCTS}, 1 + g % 5, 'review ' || g
FROM generate_series(1, {REVIEWS}) g;
INSERT INTO customers SELECT g, 'customer' || g || '@example.com' FROM generate_series(1, 5000) g;
{CREATE_INDEX_SQL};
ANALYZE;
RESET ROLE;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
"""

# --- what the services run (as role app) ---------------------------------------------------

#: The storefront's category page. Slow without MISSING_INDEX (one seq scan per product shown).
PRODUCT_LISTING = """
SELECT p.id, p.sku, p.name, p.price_cents,
       (SELECT count(*) FROM reviews r WHERE r.product_id = p.id) AS reviews
FROM products p
WHERE p.category = $1
ORDER BY p.id
LIMIT 40
"""

PRODUCT = "SELECT id, sku, name, category, price_cents FROM products WHERE id = $1"

CHECKOUT = """
WITH reserved AS (
    UPDATE inventory SET reserved = reserved + $3 WHERE sku = $2 RETURNING sku
)
INSERT INTO orders (customer_id, sku, quantity, total_cents)
SELECT $1, r.sku, $3, $3 * p.price_cents FROM reserved r JOIN products p ON p.sku = r.sku
RETURNING id
"""

SYNC_LOG = "INSERT INTO sync_log (provider, record, status, error) VALUES ($1, $2, $3, $4)"

TRIM_SYNC_LOG = "DELETE FROM sync_log WHERE created_at < now() - interval '10 minutes'"
TRIM_ORDERS = "DELETE FROM orders WHERE created_at < now() - interval '30 minutes'"
