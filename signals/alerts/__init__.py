"""Alerts: webhook and Telegram subscriptions, an outbox written in the ledger's own transactions, and delivery
at least once across restarts (`rules` decides what is an event, `outbox` keeps it, `dispatcher` delivers it)."""
