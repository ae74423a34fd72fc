"""Where spend is heading: the month-end forecaster (pure, no database: its daily model, the
combination of its candidates, its intervals), its projection over the ledger per model and
scope, month-end by model, project or feature, the backtest, prepaid runway, and what a scope
is. Imports `jobs.config` and `jobs.usage`."""
