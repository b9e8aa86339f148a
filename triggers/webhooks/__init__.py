"""Webhooks: signed deliveries of events to integrations, retried until they land or fail.

`signing` makes and encrypts secrets and signs requests (Standard Webhooks); `address_guard`
keeps deliveries off private networks; `retry_policy` decides what an answer means and when to
try again; `delivery_queue` holds what is due in Redis; `sender` makes one attempt;
`dispatcher` runs deliveries in each worker.
"""
