"""The ground floor: errors, settings, symbols, timeframes and clock, vocabularies. Imports nothing of the project."""
