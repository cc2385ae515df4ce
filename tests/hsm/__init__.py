"""Tests of the key backends: contract suite, software, PKCS#11 on SoftHSM, key URIs."""
