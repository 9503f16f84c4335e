"""PSP connectors behind one port (`workers.connectors.base.Connector`); `build` makes the one
`PAYHOOK_CONNECTOR` names. Empty on purpose: importing one module of the package (the port,
say, for a decision) loads no connector and no HTTP client."""
