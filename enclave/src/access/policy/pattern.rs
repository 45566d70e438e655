//! IAM wildcard matching: `*` matches any run of characters (including none), `?` exactly one.

/// Whether `text` matches `pattern`. Case-sensitive; callers lowercase both sides where the
/// comparison is case-insensitive.
///
/// Greedy matching that backtracks only to the last `*`: O(len(pattern) * len(text)) in the
/// worst case, never exponential. Lengths are bounded by the parser
/// ([`super::MAX_STRING_CHARS`]) and by the request limits.
pub(super) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` seen, and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("kms:encrypt*", "kms:encrypt", true),
            ("kms:encrypt*", "kms:encryptx", true),
            ("kms:encrypt*", "kms:decrypt", false),
            ("kms:generate*", "kms:generatedatakey", true),
            ("kms:re*crypt*", "kms:reencryptfrom", true),
            ("kms:?ncrypt", "kms:encrypt", true),
            ("kms:?ncrypt", "kms:ncrypt", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("", "", true),
            ("", "a", false),
            ("abc", "ab", false),
            ("ab", "abc", false),
            (
                "*a*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("Key/*", "key/1", false),
            ("é?", "éß", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(wildcard_match(pattern, text), want, "{pattern} vs {text}");
        }
    }
}
