"""Where spend is heading: the month-end forecaster (pure, no database: its daily model, the
combination of its candidates, its intervals), its projection over the ledger per model and
scope, month-end by model, project or feature, the backtest, prepaid runway, what a scope is,
and the scope index that budgets, the digest and the App Home read spend and forecasts by scope
from. Imports `jobs.config` and `jobs.usage`."""
