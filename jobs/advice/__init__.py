"""What to change to spend less: serverless workloads that look like offline work, and what
moving them to batch saves. Imports `jobs.config`, `jobs.usage` and `jobs.forecast`."""
