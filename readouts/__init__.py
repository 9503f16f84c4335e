"""What operators read, above the session core and the shops: the flow, the stuck and the
failed at a bounded cost (`stats`, for `/metrics`, the dashboard and `payhook sessions
stats`), the last hour per minute (`activity`), finding sessions by filter (`query`, for
`payhook sessions`, `payhook replay` and the admin API) and the money failed sessions still
hold (`held`). It only reads: the indexes it reads are kept by the session core's write
scripts (`sessions.due_index`), and nothing below imports it."""
