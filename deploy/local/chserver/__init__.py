"""A local ClickHouse: the HTTP interface of clickhouse-server over chdb-core's engine.

Run it with `python -m chserver --data DIR` from deploy/local (see README.md there).
"""
