"""What a running budget-guard is configured with and holds: settings (environment and
`budget-guard.toml`, whose sections are models of their own), the catalog as this deployment
sees it, the context passed to jobs, and the one redactor every outgoing error text passes
through. Imports nothing else of `jobs`."""
