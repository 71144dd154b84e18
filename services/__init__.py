"""The application services: one module per aggregate with its use cases and read models.

Used by `api/` (route handlers authenticate, validate, call one service and shape the response) and by the CLI.
A service works through `activities.stores` (SQL in a tenant transaction), the provider adapters, and Temporal
by workflow, update and signal names from `contracts/` — never by importing a workflow module.
"""
