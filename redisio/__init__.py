"""Redis plumbing, below the session store: the clients and pools every process uses
(`connect`, Sentinel included), where the primary, its replicas and the sentinels stand
(`topology`), writes held until replicas have them (`replication`, Redis `WAIT`), and whether
the configured Redis may lose or evict what payhook stores (`durability`). It knows no key
of payhook's: what to store, and where, is the business of the packages above it."""
