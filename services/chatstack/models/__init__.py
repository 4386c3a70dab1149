"""Model helpers: the deterministic tiny models chatstack tests and the local run use."""
