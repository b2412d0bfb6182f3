"""Webhook secrets encrypted at rest with Fernet (a token under another key, or altered, is refused, not
garbled). A key is a Fernet key or a passphrase, derived by scrypt with a fixed salt so every process
given it derives the same key; surrounding whitespace is ignored.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from video_pipelines.errors import SecretKeyError

SECRET_KEY_ENV = "VIDEO_PIPELINES_SECRET_KEY"  # noqa: S105 (the name of the variable, not a key)
KEY_FILE_NAME = "video_pipelines_secret.key"
PASSPHRASE_SALT = b"video_pipelines/submissions/webhook-secret/v1"
_FERNET_KEY_CHARS = 44
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
# scrypt needs 128 * r * n bytes (32 MiB here), above hashlib's default 32 MiB cap with its overhead.
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def fernet_key(material: bytes | str) -> bytes:
    """The Fernet key `material` stands for: a Fernet key as it is, anything else as a passphrase."""
    raw = (material.encode("utf-8") if isinstance(material, str) else bytes(material)).strip()
    if not raw:
        raise SecretKeyError(f"the webhook-secret key is empty; set {SECRET_KEY_ENV} to a Fernet key or a passphrase")
    # binascii.Error, a bad base64 key, is a ValueError.
    with contextlib.suppress(ValueError):
        if len(raw) == _FERNET_KEY_CHARS and len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    derived = hashlib.scrypt(
        raw, salt=PASSPHRASE_SALT, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )
    return base64.urlsafe_b64encode(derived)


def _read_key_file(path: Path) -> bytes:
    try:
        material = path.read_bytes()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the webhook-secret key file {path}: {exc.strerror}") from None
    if not material.strip():
        raise SecretKeyError(
            f"the webhook-secret key file {path} is empty; restore it from a backup, or set {SECRET_KEY_ENV}"
        )
    return fernet_key(material)


def load_or_create_key_file(path: Path) -> bytes:
    """The key in `path`, or a new one written there (0600): racers hard-link a private temporary file into
    place, so all but the first read its key, never half written."""
    if path.exists():
        return _read_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        temp.unlink(missing_ok=True)
    # Losing the key loses every stored secret: make the new directory entry durable too.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key


class SecretBox:
    """Encrypts and decrypts webhook secrets with one Fernet key, resolved at the first use: a store
    that never sees a secret never needs a key."""

    def __init__(self, resolve_key: Callable[[], bytes]) -> None:
        self._resolve_key = resolve_key
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _cipher(self) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(self._resolve_key())
            return self._fernet

    def encrypt(self, plaintext: str) -> str:
        return self._cipher().encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> str:
        """The plaintext of `token`; `what` names the secret in the error when the key does not fit."""
        try:
            return self._cipher().decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise SecretKeyError(
                f"cannot decrypt {what}: the current key is not the one it was encrypted with (or the stored "
                f"value was altered); set {SECRET_KEY_ENV} (or the key file) to the key used when it was submitted"
            ) from None
