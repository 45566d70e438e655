//! Lowercase hex appended to a buffer, as `hex::encode` writes it but without the `String` it
//! allocates (and the char-by-char collection it builds it with): a request writes four
//! digests in hex (SigV4's payload and canonical-request hashes, the audit record's hash and
//! its predecessor's).

/// Digests and tags up to this long are written through a stack buffer.
const MAX_STACK: usize = 64;

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex(bytes: &[u8], out: &mut Vec<u8>) {
    let mut buf = [0u8; 2 * MAX_STACK];
    match stack_hex(bytes, &mut buf) {
        Some(digits) => out.extend_from_slice(digits),
        None => out.extend_from_slice(hex::encode(bytes).as_bytes()),
    }
}

/// Appends the lowercase hex of `bytes` to `out`.
pub fn push_hex_str(bytes: &[u8], out: &mut String) {
    let mut buf = [0u8; 2 * MAX_STACK];
    match stack_hex(bytes, &mut buf).and_then(|d| std::str::from_utf8(d).ok()) {
        Some(digits) => out.push_str(digits),
        None => out.push_str(&hex::encode(bytes)),
    }
}

/// The hex of `bytes` written into `buf`, if it fits.
fn stack_hex<'b>(bytes: &[u8], buf: &'b mut [u8; 2 * MAX_STACK]) -> Option<&'b [u8]> {
    let digits = buf.get_mut(..bytes.len().checked_mul(2)?)?;
    hex::encode_to_slice(bytes, digits).ok()?;
    Some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same text as `hex::encode`, on the stack path and past it.
    #[test]
    fn same_as_hex_encode() {
        for len in [0usize, 1, 31, 32, 64, 65, 200] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            let mut out = b"x".to_vec();
            push_hex(&bytes, &mut out);
            assert_eq!(
                out,
                format!("x{}", hex::encode(&bytes)).into_bytes(),
                "{len}"
            );
            let mut text = "y".to_owned();
            push_hex_str(&bytes, &mut text);
            assert_eq!(text, format!("y{}", hex::encode(&bytes)), "{len}");
        }
    }
}
