"""The trading-signal model server: one package, one folder per floor (../shared/DESIGN.md, "Layout").

core < data, features < models < serving, pipelines < runners, cli < service.py; the import-linter
contracts in pyproject.toml hold that rule.
"""
