"""TEST DOUBLE support code: the lab user's sudo password (not product code).

The password hash is made here, on this machine, in the SHA-512 crypt format (``$6$…``) that
glibc/libxcrypt and PAM on Debian accept, so it can be written straight into a host's /etc/shadow
in its overlay. Pure Python (the stdlib ``crypt`` module is deprecated and gone in 3.13).
"""

from __future__ import annotations

import hashlib
import secrets

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Byte order of the final digest in the encoding, 3 bytes -> 4 characters (Drepper's spec).
_ORDER = (
    (0, 21, 42),
    (22, 43, 1),
    (44, 2, 23),
    (3, 24, 45),
    (25, 46, 4),
    (47, 5, 26),
    (6, 27, 48),
    (28, 49, 7),
    (50, 8, 29),
    (9, 30, 51),
    (31, 52, 10),
    (53, 11, 32),
    (12, 33, 54),
    (34, 55, 13),
    (56, 14, 35),
    (15, 36, 57),
    (37, 58, 16),
    (59, 17, 38),
    (18, 39, 60),
    (40, 61, 19),
    (62, 20, 41),
)


def new_password() -> str:
    """A random password of 24 URL-safe characters."""
    return secrets.token_urlsafe(18)


def new_salt() -> str:
    """A random 16-character salt from the crypt alphabet."""
    return "".join(secrets.choice(_ITOA64) for _ in range(16))


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_ITOA64[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(block: bytes, length: int) -> bytes:
    return (block * (length // len(block) + 1))[:length]


def sha512_crypt(password: str, salt: str | None = None, rounds: int = 5000) -> str:
    """``$6$salt$hash`` of ``password`` (default 5000 rounds, which omits the rounds= field)."""
    pw = password.encode()
    s = (salt if salt is not None else new_salt())[:16].encode()
    b = hashlib.sha512(pw + s + pw).digest()
    a = hashlib.sha512(pw + s)
    a.update(_repeat(b, len(pw)) if pw else b"")
    n = len(pw)
    while n:
        a.update(b if n & 1 else pw)
        n >>= 1
    c = a.digest()
    p = _repeat(hashlib.sha512(pw * len(pw)).digest(), len(pw)) if pw else b""
    ds = hashlib.sha512(s * (16 + c[0])).digest()
    sb = _repeat(ds, len(s)) if s else b""
    for i in range(rounds):
        h = hashlib.sha512()
        h.update(p if i & 1 else c)
        if i % 3:
            h.update(sb)
        if i % 7:
            h.update(p)
        h.update(c if i & 1 else p)
        c = h.digest()
    encoded = "".join(_b64(c[x], c[y], c[z], 4) for x, y, z in _ORDER) + _b64(0, 0, c[63], 2)
    prefix = "$6$" if rounds == 5000 else f"$6$rounds={rounds}$"
    return f"{prefix}{s.decode()}${encoded}"


def set_shadow_hash(shadow: str, user: str, pw_hash: str) -> str:
    """/etc/shadow text with ``user``'s password field replaced by ``pw_hash``."""
    lines = shadow.splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == user and len(fields) >= 2:
            fields[1] = pw_hash
            lines[i] = ":".join(fields)
            return "\n".join(lines) + "\n"
    raise ValueError(f"user {user!r} not in shadow file")
