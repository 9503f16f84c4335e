"""Reporting outcomes to Shopify through the Payments Apps GraphQL API."""
