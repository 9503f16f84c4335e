"""The Celery transport: the app, the broker fix, and the one way a session is put on the queue.

Both sides import it; neither imports the other (`webhook/` never imports `workers/`).
"""
