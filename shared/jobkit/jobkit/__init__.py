"""Job machinery shared by the dataset and trainer services.

Worker processes, the SQLite job store, RFC 9457 problem details, idempotency keys and the
optional bearer-token check live here once; each service configures and uses them.
"""
