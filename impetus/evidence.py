"""Sealed video evidence: the unredacted frame behind an alert, readable only with the operator side's key.

The video job publishes anonymised frames only. When an operator confirms an incident, the
unredacted frame may be needed (police, court): the job therefore seals the frame it received
with the operators' *public* key as soon as it has decoded it (AES-256-GCM with a fresh key per
frame, that key wrapped with RSA-OAEP), and keeps the sealed frame of each alert next to its
anonymised evidence (``<evidence dir>/<tenant>/<alert id>.sealed``). The platform cannot open it:
the private key stays with the operator side.

``impetus evidence keygen`` makes the key pair (the private key goes where the operators keep it;
the platform is given the public key, ``IMPETUS_EVIDENCE_PUBLIC_KEY``). ``impetus evidence reveal
<alert-id> --key PRIVATE.pem --operator WHO --reason WHY`` opens it and records the reveal in
``audit.evidence_reveals`` (operator pseudonymised, reason redacted, digest of the image) before
writing the image, mode 600. No reveal without a reason; a sealed frame altered or opened with the
wrong key is refused.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from impetus.config import ConfigError, Settings

MAGIC = b"IMPSEAL1"


class EvidenceError(ConfigError):
    """Sealed evidence that cannot be made or opened as asked; the message says why."""


def generate_keypair(private_path: Path, public_path: Path) -> None:
    """A fresh RSA-3072 pair: the private key (PEM, mode 600) for the operators, the public for the platform."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private_path, public_path = Path(private_path), Path(public_path)
    if private_path.exists():
        raise EvidenceError(f"{private_path} exists: keep it (sealed evidence needs it) or move it away first")
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))


@lru_cache(maxsize=4)
def _public_key(path: str):
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_public_key(Path(path).read_bytes())


def public_key_of(settings: Settings):
    """The operators' public key, or None when none is configured (then nothing is sealed)."""
    path = settings.evidence_public_key
    return _public_key(str(path)) if path and Path(path).is_file() else None


def seal(data: bytes, public_key, context: bytes = b"") -> bytes:
    """``data`` encrypted for the holder of the private key; ``context`` is bound to it (and must match)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    wrapped = public_key.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                                   label=None))
    body = AESGCM(key).encrypt(nonce, data, MAGIC + context)
    return MAGIC + struct.pack(">HH", len(wrapped), len(context)) + wrapped + context + nonce + body


def unseal(blob: bytes, private_key) -> tuple[bytes, bytes]:
    """(data, context) of a sealed blob; EvidenceError if it was altered or the key is not the right one."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise EvidenceError("not sealed evidence")
    wrapped_len, context_len = struct.unpack(">HH", blob[len(MAGIC):len(MAGIC) + 4])
    at = len(MAGIC) + 4
    wrapped, at = blob[at:at + wrapped_len], at + wrapped_len
    context, at = blob[at:at + context_len], at + context_len
    nonce, body = blob[at:at + 12], blob[at + 12:]
    try:
        key = private_key.decrypt(wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                        algorithm=hashes.SHA256(), label=None))
        return AESGCM(key).decrypt(nonce, body, MAGIC + context), context
    except (ValueError, InvalidTag):
        raise EvidenceError("the sealed evidence does not open with this key (wrong key, or altered)") from None


def sealed_path(settings: Settings, tenant: str, alert_id: str) -> Path:
    return Path(settings.evidence_dir) / tenant / f"{alert_id}.sealed"


def find_sealed(settings: Settings, alert_id: str) -> tuple[str, Path]:
    """(tenant, path) of an alert's sealed evidence."""
    for path in sorted(Path(settings.evidence_dir).glob(f"*/{alert_id}.sealed")):
        return path.parent.name, path
    raise EvidenceError(f"no sealed evidence for alert {alert_id} under {settings.evidence_dir} (only video alerts "
                        f"raised while IMPETUS_EVIDENCE_PUBLIC_KEY was set have one)")


def reveal(settings: Settings, alert_id: str, private_key_path: Path, operator: str, reason: str,
           out: Path) -> dict:
    """Open an alert's sealed frame, record the reveal in ``audit.evidence_reveals``, write the image to ``out``."""
    from cryptography.hazmat.primitives import serialization

    from impetus.governance import _append_audit, governance_session
    from impetus.privacy import load_keyring, pseudonym, redact_text

    if not (reason or "").strip() or not (operator or "").strip():
        raise EvidenceError("a reveal needs --operator (who) and --reason (the confirmation it follows); both are "
                            "recorded in audit.evidence_reveals")
    tenant, path = find_sealed(settings, alert_id)
    try:
        private_key = serialization.load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise EvidenceError(f"cannot read the private key {private_key_path}: {err}") from None
    image, context = unseal(path.read_bytes(), private_key)
    keyring = load_keyring(settings, create=False)
    digest = hashlib.sha256(image).hexdigest()
    row = {"reveal_id": f"rev-{uuid.uuid4().hex[:12]}", "alert_id": alert_id, "tenant": tenant,
           "revealed_at": datetime.now(timezone.utc), "operator": pseudonym(operator.strip(), keyring.current),
           "reason": redact_text(reason.strip(), keyring.current), "sha256": digest}
    spark = governance_session(settings, "evidence_reveal")
    _append_audit(spark, settings, "audit.evidence_reveals", [row])   # recorded before anything is shown
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(image)
    return {"reveal_id": row["reveal_id"], "alert_id": alert_id, "tenant": tenant, "out": str(out),
            "sha256": digest, "frame": context.decode("utf-8", "replace")}
