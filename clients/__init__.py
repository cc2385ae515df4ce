"""The clients of the bank: the merchant (``clients.merchant``) and the cardholder's wallet
(``clients.wallet``).

Shared by both:

    transport    gRPC channels (TLS, mutual TLS), exact-bytes calls, deadlines, retries
    peers        how a configuration names a peer (target, TLS files, insecure)
    authority    the CertificateAuthority client (registration, revocation data)
    revocation   keeping a trust store's BCI and CRLs current
    identity     the pinned root, the issuing chain, credentials from the key backend
    config_file  reading merchant.toml and wallet.toml: UTF-8, known tables and keys only
    errors       the error tree of the clients (``ClientError``), documented there
"""
