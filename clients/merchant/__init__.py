"""The merchant: serves wallets (PInit, Purchase, Inquiry), talks to the payment gateway.

    config          merchant.toml + SETPAY_MERCHANT_* (frozen ``MerchantConfig``)
    store           its own SQLite: offers, orders, the sealed PI, tokens, operations
    schema          that SQLite file's tables, their version, rows -> records
    checkout        PInit / Purchase / Inquiry in plain Python (setcore does the checks)
    authorizer      AuthReq built once, stored, sent and re-sent byte for byte; worker
    settlement      capture, refund, reversals, batches
    outcome         which gateway answers are final, which leave a request pending
    gateway_client  the PaymentGateway client (mutual TLS, deadlines, bounded retries)
    servicer        the thin gRPC servicer and its server
    answers         failures -> signed SET Errors or gRPC status, in one place
    registration    certificates from the Merchant CA
    runtime         ``Merchant``: all of the above opened from a configuration
    metrics         its Prometheus page (``serve --metrics-port``); label sets in
                    ``metrics_labels``

The merchant never holds, stores or logs a PAN: the PI it forwards is sealed to the
gateway and kept as opaque bytes. Errors are those of ``clients.errors`` plus setcore's
``ProtocolError`` / ``PeerError``.
"""
