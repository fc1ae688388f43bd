"""Registry HTTP API v2 tools for migrating a Docker Registry into Harbor (inventory, verification).

The command-line entry points are the thin scripts beside this package: `verify_migration.py`,
`registry_inventory.py` and `bench_verify.py`.
"""
