"""The cardholder's wallet: registers its card with the CA, buys, asks about purchases.

    config        wallet.toml + SETPAY_WALLET_* (frozen ``WalletConfig``)
    vault         the card (PAN, expiry, CardSecret, PANSecret) sealed under a passphrase
    registration  CardCInit, RegForm, CertReq, CertInq with the Cardholder CA
    purchases     PInit, PReq, InqReq to a merchant over server-authenticated TLS
    purchase_book purchases.json: each purchase's record, read back checked, under a lock
    runtime       ``Wallet``: the above opened from a configuration

The signature key stays in the key backend (software keystore or PKCS#11 token); the
PAN leaves the wallet only sealed to the CA or to the gateway. Errors are those of
``clients.errors`` plus setcore's ``ProtocolError`` / ``PeerError``.
"""
