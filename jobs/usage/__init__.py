"""Usage in: what a valid record is, costing at the price in effect and hourly bucketing,
pushes (group commit), file imports, OTLP spans, LiteLLM spend logs, pulled sources
(`usage.sources`), together.ai price sync, repricing, the dedicated endpoints last seen, and the
demo month. Imports `jobs.config` and `jobs.runtime`."""
