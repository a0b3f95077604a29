"""CRM adapters: each CRM's webhook wire format → canonical events (pure, no I/O).

bitrix24, amocrm, hubspot, pipedrive: normalisers per CRM; forms: the PHP-bracket form
parser; common: shared types and converters; sources: the tenants file's ``crm:`` section.
"""
