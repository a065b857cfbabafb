//! Webhook request signatures.
//!
//! Header `X-Caseroom-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<raw body>">`. Several secrets may be active at once so they can be
//! rotated without downtime; the comparison is constant-time (`hmac`'s
//! `verify_slice`), and a timestamp more than [`TOLERANCE_SECS`] from now is
//! refused so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// How far a request's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. Messages are safe to show the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Caseroom-Signature header")]
    Missing,
    #[error("malformed X-Caseroom-Signature header (expected t=<unix seconds>,v1=<hex>)")]
    Malformed,
    #[error("signature timestamp is more than 5 minutes from now")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

/// The header value for `body` signed at `t` with `secret` (for clients and tests).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` against `body` with any of `secrets` at time `now`.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            Some(_) => {} // other schemes: ignored, like Stripe does
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // Checked: a timestamp near i64::MIN/MAX overflowed the subtraction
    // (a panic in debug builds, a wrapped "fresh" result in release).
    if now
        .checked_sub(t)
        .is_none_or(|d| d.unsigned_abs() > TOLERANCE_SECS.unsigned_abs())
    {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        for sig in &sigs {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
                .expect("HMAC takes any key length");
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing: `t=9223372036854775807` with `now = -1` overflowed
    /// `(now - t).abs()`.
    #[test]
    fn extreme_timestamp_is_stale_not_an_overflow() {
        let secret = Secret::new("S", "s");
        for (t, now) in [
            (i64::MAX, -1),
            (i64::MIN, 1),
            (i64::MIN, i64::MAX),
            (-1, i64::MIN),
        ] {
            let h = sign("s", t, b"{}");
            assert_eq!(
                verify(Some(&h), b"{}", std::slice::from_ref(&secret), now),
                Err(SignatureError::Stale),
                "t={t} now={now}"
            );
        }
        let h = format!("t={},v0=t=-1,v1=00", i64::MAX);
        assert_eq!(
            verify(Some(&h), b"", std::slice::from_ref(&secret), -1),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn signs_and_verifies_with_rotation() {
        let old = Secret::new("OLD", "old-secret");
        let new = Secret::new("NEW", "new-secret");
        let body = br#"{"external_id":"1"}"#;
        let h = sign("old-secret", 1000, body);
        assert_eq!(
            verify(Some(&h), body, &[new.clone(), old.clone()], 1010),
            Ok(())
        );
        assert_eq!(
            verify(Some(&h), body, std::slice::from_ref(&new), 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), b"{}", std::slice::from_ref(&old), 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&h), body, std::slice::from_ref(&old), 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&h), body, std::slice::from_ref(&old), 1000 - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(None, body, std::slice::from_ref(&old), 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(Some("v1=zz"), body, std::slice::from_ref(&old), 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(Some("t=1000"), body, &[old], 1000),
            Err(SignatureError::Malformed)
        );
    }
}
