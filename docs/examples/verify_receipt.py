"""Verifies a Herald receipt webhook request (docs/receipts.md).

Usage as a script (what Herald's tests run): the app's receipt secret, the request's
X-Herald-Timestamp and X-Herald-Signature headers as arguments, its body on standard
input; exits 0 when the signature is right and the timestamp within 5 minutes of now.
"""
import base64
import hashlib
import hmac
import sys
import time


def verify(secret: str, timestamp: str, signature: str, body: bytes, max_skew_ms: int = 300_000) -> bool:
    if abs(time.time() * 1000 - int(timestamp)) > max_skew_ms:
        return False  # too old or from the future: a replay
    mac = hmac.new(secret.encode(), timestamp.encode() + b"\n" + body, hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return hmac.compare_digest(expected, signature)


if __name__ == "__main__":
    ok = verify(sys.argv[1], sys.argv[2], sys.argv[3], sys.stdin.buffer.read())
    sys.exit(0 if ok else 1)
