"""How the worker's records get out exactly once: offsets in order with skipped records read back
(`continuity`), batches and commits (`offsets`), the outbox on Faust's producer (`outbox`), and table
writes with their changelog records and dead letters (`writes`)."""
