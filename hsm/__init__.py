"""Key custody: private keys stay behind ``hsm.base.KeyBackend``; callers hold handles.

    base, errors      the interface and its error tree (what the rest of setpay sees)
    policy            rules every backend applies: labels, usage, algorithms, certificates
    software          software keys, in memory or in a keystore directory (NOT an HSM)
    keystore          the software keystore's files: encrypted PKCS#8 plus JSON metadata
    pkcs11            keys on a PKCS#11 token (SoftHSM 2 tested), built from:
      token_session     every token call: pool, module lock, recovery when the token goes
      token_connect     re-initialize, find the token, log in (bounded tries, PIN latch)
      token_login       C_Login on a session; the names of a token's login locks
      pin_latch         a refused PIN not offered again; refusals shared on the host
      session_keeper    the sessions from lease to close; the bounded module lock
      token_catalog     which key versions are on the token; OAEP variant detection
      token_creation    a key version made all or nothing, or adopted
      token_objects     how a key version looks as PKCS#11 objects
      cryptoki          the PKCS#11 module per process: init after fork, one lock
      ckr               every CKR code mapped to the error tree
      session_pool      bounded pool of sessions
    uri               open a backend from a key URI; describe a URI without secrets
    pinsource         where PINs and passphrases come from (file or environment)
    observer          the metrics hook (no prometheus import here)
    filelock          an exclusive lock between processes, with a bounded wait

Knows nothing of SET. Importing this package imports nothing: python-pkcs11 is loaded
only when a pkcs11: URI is opened.
"""
