"""Enrichment: webhooks that carry only ids are completed by paced CRM REST calls and
published as canonical events; everything here happens before the crm.events topic."""
