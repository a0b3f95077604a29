"""CRM REST clients of the enrichment: bitrix24 and hubspot, on what http shares (errors,
rate limiter, retries, a TTL cache)."""
