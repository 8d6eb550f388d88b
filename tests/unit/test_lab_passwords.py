"""Lab (test double) sudo password: SHA-512 crypt made on this machine."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from provisioner_lab.passwords import new_password, new_salt, set_shadow_hash, sha512_crypt


def test_sha512_crypt_reference_vectors() -> None:
    # From Ulrich Drepper's SHA-crypt specification.
    assert sha512_crypt("Hello world!", "saltstring") == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
    )
    assert sha512_crypt("Hello world!", "saltstringsaltstring", rounds=10000) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to compare with")
@pytest.mark.parametrize("password", ["a", "x" * 64, "y" * 130, "pässwörd", new_password()])
def test_sha512_crypt_matches_openssl(password: str) -> None:
    salt = new_salt()
    want = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input=password + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    assert sha512_crypt(password, salt) == want


def test_new_password_is_random_and_long() -> None:
    a, b = new_password(), new_password()
    assert a != b and len(a) >= 20


def test_set_shadow_hash_replaces_only_that_user() -> None:
    shadow = "root:*:20000:0:99999:7:::\nlab:!:20000:0:99999:7:::\n"
    out = set_shadow_hash(shadow, "lab", "$6$s$h")
    assert out == "root:*:20000:0:99999:7:::\nlab:$6$s$h:20000:0:99999:7:::\n"
    with pytest.raises(ValueError):
        set_shadow_hash(shadow, "nobody", "x")
