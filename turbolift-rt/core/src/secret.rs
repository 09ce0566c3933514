//! The run's shared secret, as a service compares a request's with it.

use subtle::ConstantTimeEq;

/// Whether `given` is the `secret`, compared in constant time (subtle's `ConstantTimeEq`),
/// so the time taken does not tell how much matched; only a different length is answered
/// at once.
pub fn is_secret(given: &[u8], secret: &[u8]) -> bool {
    if given.len() != secret.len() {
        return false;
    }
    // Every byte is compared, whatever the first difference (no early exit): the
    // differences are gathered into one byte, which is compared in constant time.
    let differences = given
        .iter()
        .zip(secret)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    differences.ct_eq(&0).into()
}

#[cfg(test)]
mod tests {
    use super::is_secret;

    #[test]
    fn only_the_whole_secret_is_the_secret() {
        assert!(is_secret(b"secret", b"secret"));
        assert!(!is_secret(b"secreT", b"secret"));
        assert!(!is_secret(b"secret!", b"secret"));
        assert!(!is_secret(b"", b"secret"));
        assert!(!is_secret(b"secret", b""));
    }
}
