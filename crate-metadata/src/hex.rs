//! Lowercase hex, as the manifest writes digests, signatures and keys: the one copy every crate
//! of the system uses.

use alloc::string::String;

/// `bytes` as lowercase hex digits.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The `N` bytes of a string of exactly `2 * N` hex digits (either case; surrounding whitespace
/// ignored), or `None`.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim().as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (digit(text[2 * i])? << 4) | digit(text[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let bytes = [0x00, 0x7f, 0x80, 0xff, 0x12];
        assert_eq!(encode(&bytes), "007f80ff12");
        assert_eq!(decode::<5>("007f80ff12"), Some(bytes));
        assert_eq!(decode::<5>(" 007F80FF12\n"), Some(bytes));
        assert_eq!(decode::<5>("007f80ff1"), None, "odd length");
        assert_eq!(decode::<5>("007f80ff1g"), None, "not a digit");
        assert_eq!(decode::<4>("007f80ff12"), None, "too long");
        assert_eq!(decode::<1>("é1"), None, "not ASCII");
    }
}
