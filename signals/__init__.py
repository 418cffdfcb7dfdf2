"""The trading-signal model server: one package, one folder per floor (docs/architecture.md).

Top to bottom: runners | cli > api > live > track_record > serving | alerts | pipelines | testing > models | ledger
> contract > data | features > core (< service.py); the import-linter contracts in pyproject.toml hold that rule.
"""
