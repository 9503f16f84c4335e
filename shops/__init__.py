"""The shops payhook serves, above the session core: their access tokens, encrypted at rest
(`tokens`), the OAuth install's single-use state (`installs`), what payhook asks Shopify to
configure for each shop's payments app (`onboarding`), and Shopify's webhooks about a shop
(`webhooks`, kept with the durability sessions have by `webhook_store`) with what its privacy
requests erase or report (`privacy`). It uses the session core (keys, leases, the handoff
port, the ledger's keys); the session core never imports it."""
