"""Session lifecycles: the shared runner and one module per session kind."""
