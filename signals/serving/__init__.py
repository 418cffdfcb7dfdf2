"""Serving: the engine behind the HTTP API, market data, catalog, risk levels, schemas, and the runner wire types."""
