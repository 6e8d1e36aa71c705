"""Ed25519 keys for signed checkpoints: the key file, its public form, signing and verifying.

The private key is a PEM (PKCS#8) file written by ``stop keygen`` with mode 0600 and held
outside the store: whoever can edit the store must not be able to sign. ``STOP_SIGNING_KEY``
names it. Ed25519 signatures are deterministic, so a checkpoint event recorded twice (a resume
re-recording the same count) has the same content and the same identity.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from events.codec import canonical_bytes, sha256_hex
from outcome import ConfigError, UsageError

__all__ = (
    "KEY_ENV",
    "Signer",
    "checkpoint_message",
    "fingerprint",
    "generate_key_file",
    "load_public_key",
    "parse_public_key",
    "public_key_text",
    "signer_from_env",
    "verify_signature",
)

#: The environment variable naming the private key file.
KEY_ENV = "STOP_SIGNING_KEY"
_PREFIX = "ed25519:"


def checkpoint_message(run_id: str, count: int, head: str, end: str) -> bytes:
    """The bytes a checkpoint signs. ``end`` is in it, so a periodic checkpoint cannot be turned
    into an end checkpoint after the events following it were cut."""
    return canonical_bytes(
        {"purpose": "stop.checkpoint", "v": 1, "run_id": run_id, "count": count, "head": head, "end": end}
    )


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64 of the 32 raw bytes>``: one line, what ``stop keygen`` prints."""
    return _PREFIX + base64.b64encode(_raw(key)).decode("ascii")


def fingerprint(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key."""
    return sha256_hex(_raw(key))[:16]


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key from ``ed25519:<base64>``; ``ValueError`` if it is not one."""
    text = text.strip()
    if not text.startswith(_PREFIX):
        raise ValueError(f"not an {_PREFIX}<base64> public key")
    try:
        raw = base64.b64decode(text[len(_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc


def verify_signature(public_key: str, signature: str, message: bytes) -> bool:
    """Does ``signature`` (base64) over ``message`` verify under ``public_key`` (text form)?"""
    try:
        key = parse_public_key(public_key)
        key.verify(base64.b64decode(signature, validate=True), message)
    except (ValueError, binascii.Error, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class Signer:
    """A loaded private key: signs checkpoint messages."""

    key: Ed25519PrivateKey
    path: str = ""

    @property
    def public_key(self) -> str:
        return public_key_text(self.key.public_key())

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key.public_key())

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.key.sign(message)).decode("ascii")


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"signing key {path} is accessible by other users (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not an unencrypted PEM private key: {exc}", hint="make one with `stop keygen PATH`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", hint="make one with `stop keygen PATH`")
    return key


def signer_from_env(env: Mapping[str, str] | None = None) -> Signer | None:
    """The signer ``STOP_SIGNING_KEY`` names (None when it is unset or empty); a ``ConfigError``
    before anything runs when the file is missing, not a key, or readable by others."""
    path = (os.environ if env is None else env).get(KEY_ENV, "").strip()
    if not path:
        return None
    return Signer(_read_private(Path(path)), path)


def load_public_key(spec: str) -> Ed25519PublicKey:
    """The key ``--public-key`` pins: a file holding ``ed25519:<base64>`` (what ``stop keygen``
    writes to ``PATH.pub``), a PEM public key, or the private key file itself; or the
    ``ed25519:<base64>`` text given directly."""
    if spec.strip().startswith(_PREFIX):
        try:
            return parse_public_key(spec)
        except ValueError as exc:
            raise UsageError(f"--public-key {spec!r}: {exc}") from exc
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read public key {path}: {exc.strerror}") from exc
    text = data.decode("utf-8", "replace").strip()
    if text.startswith(_PREFIX):
        try:
            return parse_public_key(text)
        except ValueError as exc:
            raise UsageError(f"{path}: {exc}") from exc
    if "PRIVATE KEY" in text:
        return _read_private(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise UsageError(f"{path} is not a public key ({_PREFIX}<base64> or PEM): {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{path} is not an Ed25519 public key")
    return key


def generate_key_file(path: Path) -> Signer:
    """Write a new private key to ``path`` (mode 0600; refuses to overwrite) and its public key
    to ``path.pub``; a ``UsageError`` if either exists or cannot be written."""
    pub = path.with_name(path.name + ".pub")
    for p in (path, pub):
        if p.exists() or p.is_symlink():
            raise UsageError(f"{p} exists; refusing to overwrite a key", hint="choose another path or remove it first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    signer = Signer(key, str(path))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)  # whatever the umask
    try:
        fd = os.open(pub, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise UsageError(f"cannot create {pub}: {exc.strerror} (the private key {path} was written)") from exc
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(signer.public_key + "\n")
    return signer
