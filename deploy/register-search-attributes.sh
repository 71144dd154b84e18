#!/usr/bin/env bash
# Register paysaga's custom search attributes (contracts/search_attributes.py) on a Temporal namespace.
# Usage: TEMPORAL_ADDRESS=host:7233 ./register-search-attributes.sh [namespace]
set -euo pipefail
ns="${1:-default}"
for name in TenantId CustomerId PaymentId PaymentStatus Currency RefundId DisputeId FraudAction InvoiceId \
    InvoiceStatus; do
  temporal operator search-attribute create --namespace "$ns" --name "$name" --type Keyword \
    --address "${TEMPORAL_ADDRESS:-localhost:7233}" || echo "($name may already exist)"
done
for name in PayoutRunId ConnectedAccountId PayoutStatus; do
  temporal operator search-attribute create --namespace "$ns" --name "$name" --type KeywordList \
    --address "${TEMPORAL_ADDRESS:-localhost:7233}" || echo "($name may already exist)"
done
temporal operator search-attribute create --namespace "$ns" --name FraudScore --type Int \
  --address "${TEMPORAL_ADDRESS:-localhost:7233}" || echo "(FraudScore may already exist)"
