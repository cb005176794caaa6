"""The benchmark of the cleanup and the lookup against the SQL floor on PostgreSQL.

Run ``python -m benchmarks.run --help``; the figures and their targets are in ``benchmarks.run``.
"""
