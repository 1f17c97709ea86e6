"""The embedded demo stack: a private Postgres cluster, Prometheus and a demo service."""
