"""Code shared by every part: settings, wire schemas, vector maths, store access, clients.

Dependency-light on purpose: nothing here imports torch, and only `store.py` imports
clickhouse_connect. No module here imports a service.
"""
