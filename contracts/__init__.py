"""What the layers exchange, and nothing else: workflow inputs, views, messages, ids, names and error types.

A neutral home: `api/`, `services/`, `activities/` and `workflows/` import it; it imports only `domain/`,
pydantic and temporalio's plain types (never I/O, never a layer above it), so the workflow sandbox can load it
cheaply. One module per aggregate; the search-attribute registry and the error-type names are shared.
"""
