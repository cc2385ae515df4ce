"""setpay's chains, CRLs and PSS signatures checked by the real ``openssl`` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from setcore.pki import IssuingCA

from .conftest import World, run_openssl, write_pem


def _leaves(world: World) -> list[tuple[str, bytes, IssuingCA]]:
    brand = world.brand
    return [
        ("cardholder", world.cardholder, brand.cardholder_ca.ca),
        ("merchant-sig", world.merchant_sig, brand.merchant_ca.ca),
        ("merchant-kex", world.merchant_kex, brand.merchant_ca.ca),
        ("gateway-sig", world.gateway_sig, brand.gateway_ca.ca),
        ("gateway-kex", world.gateway_kex, brand.gateway_ca.ca),
        *[(f"ca-kex-{i}", s.key_exchange_der, s.ca) for i, s in enumerate(brand.subordinates)],
    ]


def _verify(tmp_path: Path, world: World, leaf: bytes, ca: IssuingCA, *extra: str) -> str:
    root = write_pem(tmp_path / "root.pem", [world.root.der])
    untrusted = write_pem(tmp_path / "untrusted.pem", [ca.der])
    leaf_pem = write_pem(tmp_path / "leaf.pem", [leaf])
    result = run_openssl(
        "verify",
        "-x509_strict",
        "-CAfile",
        str(root),
        "-untrusted",
        str(untrusted),
        *extra,
        str(leaf_pem),
    )
    return result.stdout + result.stderr


def test_openssl_verifies_every_chain(tmp_path: Path, world: World) -> None:
    for name, leaf, ca in _leaves(world):
        output = _verify(tmp_path, world, leaf, ca)
        assert output.strip().endswith(": OK"), f"{name}: {output}"


def test_openssl_verifies_chains_with_crls(tmp_path: Path, world: World) -> None:
    crls = write_pem(tmp_path / "crls.pem", list(world.crls), kind="crl")
    for name, leaf, ca in _leaves(world):
        output = _verify(tmp_path, world, leaf, ca, "-crl_check_all", "-CRLfile", str(crls))
        assert output.strip().endswith(": OK"), f"{name}: {output}"


def test_openssl_sees_a_revocation(tmp_path: Path, world: World) -> None:
    from cryptography import x509

    mca = world.brand.merchant_ca.ca
    serial = x509.load_der_x509_certificate(world.merchant_sig).serial_number
    _, crls = world.publish(2, {mca.thumbprint: [serial]})
    crl_file = write_pem(tmp_path / "crls.pem", list(crls), kind="crl")
    output = _verify(
        tmp_path, world, world.merchant_sig, mca, "-crl_check_all", "-CRLfile", str(crl_file)
    )
    assert "certificate revoked" in output


def test_openssl_refuses_a_foreign_root(tmp_path: Path, world: World) -> None:
    # Sanity check of the harness: a chain is not accepted against a wrong anchor.
    root = write_pem(tmp_path / "root.pem", [world.brand.merchant_ca.ca.der])
    leaf = write_pem(tmp_path / "leaf.pem", [world.gateway_sig])
    result = run_openssl("verify", "-CAfile", str(root), str(leaf))
    assert result.returncode != 0


def test_openssl_verifies_every_crl(tmp_path: Path, world: World) -> None:
    for index, (ca, crl) in enumerate(zip((world.root, *world.cas), world.crls, strict=True)):
        cafile = write_pem(tmp_path / f"ca{index}.pem", list(ca.chain))
        crl_file = write_pem(tmp_path / f"crl{index}.pem", [crl], kind="crl")
        result = run_openssl(
            "crl", "-in", str(crl_file), "-CAfile", str(cafile), "-noout", "-verify"
        )
        assert result.returncode == 0, result.stderr
        assert "verify OK" in result.stdout + result.stderr


def test_rsa_profile_signs_pss_salt_32(tmp_path: Path, world: World) -> None:
    leaf = write_pem(tmp_path / "leaf.pem", [world.merchant_sig])
    text = run_openssl("x509", "-in", str(leaf), "-noout", "-text").stdout
    if world.profile.name == "rsa":
        assert "rsassaPss" in text
        assert "Salt Length: 0x20" in text
        assert "sha256" in text.lower()
    else:
        assert "ecdsa-with-SHA256" in text
    assert "2.25.88477392499864150230206484485904515263.1" in text
    assert "critical" not in text.split("2.25.88477392499864150230206484485904515263.1")[1][:20]


@pytest.mark.parametrize("flip", [-1, -40])
def test_openssl_refuses_a_tampered_certificate(tmp_path: Path, world: World, flip: int) -> None:
    tampered = bytearray(world.gateway_sig)
    tampered[flip] ^= 0x01
    output = _verify(tmp_path, world, bytes(tampered), world.brand.gateway_ca.ca)
    assert not output.strip().endswith(": OK")
