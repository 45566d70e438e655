//! Condition blocks: operators, keys, and their evaluation (AWS IAM "Condition operators",
//! "Single-valued vs. multivalued context keys", and the KMS condition keys).
//!
//! Semantics, as IAM:
//! - a condition holds if the request value matches any of its values (OR); all conditions
//!   of a statement must hold (AND);
//! - a missing key makes a positive operator false and a negated one (`...Not...`) true;
//!   with `IfExists` a missing key makes the condition true; `Null` tests presence;
//! - `ForAnyValue:` holds if some request value matches (false on an empty or missing set),
//!   `ForAllValues:` if every request value matches (true on an empty or missing set);
//! - a request value of the wrong type (a non-number under `Numeric...`) matches nothing.
//!
//! Stricter than IAM: a multi-valued key (`kms:EncryptionContextKeys`, `kms:GrantOperations`)
//! must be qualified with `ForAnyValue:` or `ForAllValues:`, where IAM's unqualified
//! behaviour is easy to misread.

use std::borrow::Cow;
use std::cmp::Ordering;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use super::node::{self, invalid, shown, Node, Version};
use super::{PolicyError, RequestContext, MAX_CONDITIONS, MAX_LIST_VALUES};

/// One operator applied to one key with its values.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    op: Operator,
    key: ConditionKey,
    operand: Operand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Exact, case-sensitive.
    String,
    /// Case-insensitive (values stored lowercase).
    StringIgnoreCase,
    /// `*` and `?` wildcards, case-sensitive.
    StringLike,
    /// Exact decimal comparison with the given outcome(s).
    Numeric(Cmp),
    /// Instant comparison.
    Date(Cmp),
    Bool,
    Null,
}

/// Which orderings of (request value, policy value) satisfy the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Equal,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

impl Cmp {
    fn accepts(self, o: Ordering) -> bool {
        match self {
            Cmp::Equal => o == Ordering::Equal,
            Cmp::Less => o == Ordering::Less,
            Cmp::LessEqual => o != Ordering::Greater,
            Cmp::Greater => o == Ordering::Greater,
            Cmp::GreaterEqual => o != Ordering::Less,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Operator {
    set: Option<SetQualifier>,
    family: Family,
    /// `StringNotEquals`, `StringNotLike`, `NumericNotEquals`, ...: true when no value matches.
    negated: bool,
    if_exists: bool,
}

impl Operator {
    fn parse(name: &str) -> Option<Operator> {
        let (set, rest) = if let Some(rest) = name.strip_prefix("ForAnyValue:") {
            (Some(SetQualifier::ForAnyValue), rest)
        } else if let Some(rest) = name.strip_prefix("ForAllValues:") {
            (Some(SetQualifier::ForAllValues), rest)
        } else {
            (None, name)
        };
        let (base, if_exists) = match rest.strip_suffix("IfExists") {
            Some(base) => (base, true),
            None => (rest, false),
        };
        let (family, negated) = match base {
            "StringEquals" => (Family::String, false),
            "StringNotEquals" => (Family::String, true),
            "StringEqualsIgnoreCase" => (Family::StringIgnoreCase, false),
            "StringNotEqualsIgnoreCase" => (Family::StringIgnoreCase, true),
            "StringLike" => (Family::StringLike, false),
            "StringNotLike" => (Family::StringLike, true),
            "NumericEquals" => (Family::Numeric(Cmp::Equal), false),
            "NumericNotEquals" => (Family::Numeric(Cmp::Equal), true),
            "NumericLessThan" => (Family::Numeric(Cmp::Less), false),
            "NumericLessThanEquals" => (Family::Numeric(Cmp::LessEqual), false),
            "NumericGreaterThan" => (Family::Numeric(Cmp::Greater), false),
            "NumericGreaterThanEquals" => (Family::Numeric(Cmp::GreaterEqual), false),
            "DateEquals" => (Family::Date(Cmp::Equal), false),
            "DateNotEquals" => (Family::Date(Cmp::Equal), true),
            "DateLessThan" => (Family::Date(Cmp::Less), false),
            "DateLessThanEquals" => (Family::Date(Cmp::LessEqual), false),
            "DateGreaterThan" => (Family::Date(Cmp::Greater), false),
            "DateGreaterThanEquals" => (Family::Date(Cmp::GreaterEqual), false),
            "Bool" => (Family::Bool, false),
            // IAM has no NullIfExists and no set-qualified Null.
            "Null" if !if_exists && set.is_none() => (Family::Null, false),
            _ => return None,
        };
        Some(Operator {
            set,
            family,
            negated,
            if_exists,
        })
    }
}

/// The condition keys this service supports. Key names are case-insensitive (as AWS); the
/// `<key>` of `kms:EncryptionContext:<key>` is case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConditionKey {
    EncryptionContext(String),
    EncryptionContextKeys,
    CallerAccount,
    EncryptionAlgorithm,
    GrantOperations,
    GrantIsForAwsResource,
    RecipientPcr(u8),
    RecipientImageSha384,
    PrincipalArn,
    CurrentTime,
}

const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:EncryptionContext:";
const PCR_PREFIX: &str = "kms:RecipientAttestation:PCR";

/// `prefix` at the start of `s`, ASCII case-insensitively; the rest of `s`.
fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

impl ConditionKey {
    fn parse(name: &str) -> Option<ConditionKey> {
        if let Some(context_key) = strip_prefix_ignore_case(name, ENCRYPTION_CONTEXT_PREFIX) {
            return (!context_key.is_empty())
                .then(|| ConditionKey::EncryptionContext(context_key.to_owned()));
        }
        if let Some(index) = strip_prefix_ignore_case(name, PCR_PREFIX) {
            let canonical = !index.is_empty()
                && index.bytes().all(|b| b.is_ascii_digit())
                && (index == "0" || !index.starts_with('0'));
            return match index.parse::<u8>() {
                Ok(n) if canonical && n <= 31 => Some(ConditionKey::RecipientPcr(n)),
                _ => None,
            };
        }
        Some(match name.to_ascii_lowercase().as_str() {
            "kms:encryptioncontextkeys" => ConditionKey::EncryptionContextKeys,
            "kms:calleraccount" => ConditionKey::CallerAccount,
            "kms:encryptionalgorithm" => ConditionKey::EncryptionAlgorithm,
            "kms:grantoperations" => ConditionKey::GrantOperations,
            "kms:grantisforawsresource" => ConditionKey::GrantIsForAwsResource,
            "kms:recipientattestation:imagesha384" => ConditionKey::RecipientImageSha384,
            "aws:principalarn" => ConditionKey::PrincipalArn,
            "aws:currenttime" => ConditionKey::CurrentTime,
            _ => return None,
        })
    }

    fn is_multi_valued(&self) -> bool {
        matches!(
            self,
            ConditionKey::EncryptionContextKeys | ConditionKey::GrantOperations
        )
    }

    /// Hex digests are compared lowercase.
    fn is_hex(&self) -> bool {
        matches!(
            self,
            ConditionKey::RecipientPcr(_) | ConditionKey::RecipientImageSha384
        )
    }

    /// The request's values for this key; an empty vector when the key is absent (an empty
    /// set counts as absent, as KMS treats an empty encryption context).
    fn lookup<'c>(&self, ctx: &RequestContext<'c>) -> Vec<RequestValue<'c>> {
        let text = |s: &'c str| RequestValue::Text(Cow::Borrowed(s));
        let owned = |s: String| RequestValue::Text(Cow::Owned(s));
        match self {
            ConditionKey::EncryptionContext(k) => ctx
                .encryption_context
                .and_then(|c| c.get(k))
                .map(|v| text(v.as_str()))
                .into_iter()
                .collect(),
            ConditionKey::EncryptionContextKeys => ctx
                .encryption_context
                .map(|c| c.keys().map(|k| text(k.as_str())).collect())
                .unwrap_or_default(),
            ConditionKey::CallerAccount => vec![text(ctx.account)],
            ConditionKey::EncryptionAlgorithm => {
                ctx.encryption_algorithm.map(text).into_iter().collect()
            }
            ConditionKey::GrantOperations => ctx
                .grant_operations
                .map(|ops| ops.iter().map(|o| text(o.as_str())).collect())
                .unwrap_or_default(),
            ConditionKey::GrantIsForAwsResource => ctx
                .grant_is_for_aws_resource
                .map(|b| text(if b { "true" } else { "false" }))
                .into_iter()
                .collect(),
            ConditionKey::RecipientPcr(n) => ctx
                .recipient_pcrs
                .and_then(|pcrs| pcrs.get(n))
                .map(|v| owned(hex::encode(v))) // public value
                .into_iter()
                .collect(),
            ConditionKey::RecipientImageSha384 => ctx
                .recipient_image_sha384
                .map(|v| owned(hex::encode(v))) // public value
                .into_iter()
                .collect(),
            ConditionKey::PrincipalArn => vec![text(ctx.principal_arn)],
            ConditionKey::CurrentTime => vec![RequestValue::Millis(ctx.now_millis)],
        }
    }
}

/// One value of a request's condition key.
#[derive(Debug)]
enum RequestValue<'c> {
    Text(Cow<'c, str>),
    /// `aws:CurrentTime`.
    Millis(i64),
}

impl RequestValue<'_> {
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            RequestValue::Text(s) => Some(Cow::Borrowed(s.as_ref())),
            RequestValue::Millis(ms) => {
                let nanos = i128::from(*ms).checked_mul(1_000_000)?;
                let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
                t.format(&Rfc3339).ok().map(Cow::Owned)
            }
        }
    }

    fn nanos(&self) -> Option<i128> {
        match self {
            RequestValue::Text(s) => parse_date(s),
            RequestValue::Millis(ms) => i128::from(*ms).checked_mul(1_000_000),
        }
    }
}

/// The condition's values, parsed for its operator.
#[derive(Debug, Clone)]
enum Operand {
    Strings(Vec<String>),
    Numbers(Vec<Decimal>),
    /// Nanoseconds since the Unix epoch.
    Dates(Vec<i128>),
    Bools(Vec<bool>),
}

impl Condition {
    /// Parses a `Condition` block: `{Operator: {Key: value | [values]}}`.
    pub(super) fn parse_block(
        path: &str,
        node: &Node,
        version: Version,
    ) -> Result<Vec<Condition>, PolicyError> {
        let Node::Object(operators) = node else {
            return Err(invalid(
                path,
                format!("expected an object, found {}", node.type_name()),
            ));
        };
        let mut conditions = Vec::new();
        for (op_name, keys) in operators {
            let op = Operator::parse(op_name).ok_or_else(|| PolicyError::UnknownOperator {
                path: path.to_owned(),
                operator: shown(op_name),
            })?;
            let op_path = format!("{path}.{}", shown(op_name));
            let Node::Object(keys) = keys else {
                return Err(invalid(
                    &op_path,
                    format!("expected an object, found {}", keys.type_name()),
                ));
            };
            if keys.is_empty() {
                return Err(invalid(&op_path, "no condition keys"));
            }
            for (key_name, values) in keys {
                if conditions.len() >= MAX_CONDITIONS {
                    return Err(PolicyError::TooMany {
                        path: path.to_owned(),
                        what: "conditions",
                        limit: MAX_CONDITIONS,
                    });
                }
                let key = ConditionKey::parse(key_name).ok_or_else(|| {
                    PolicyError::UnknownConditionKey {
                        path: op_path.clone(),
                        key: shown(key_name),
                    }
                })?;
                let key_path = format!("{op_path}.{}", shown(key_name));
                if key.is_multi_valued() && op.set.is_none() && op.family != Family::Null {
                    return Err(invalid(
                        &key_path,
                        "a multi-valued key needs ForAnyValue: or ForAllValues:",
                    ));
                }
                let raw = condition_values(&key_path, values)?;
                for v in &raw {
                    node::no_policy_variable(&key_path, version, v)?;
                }
                let operand = Operand::parse(&key_path, op.family, &key, raw)?;
                conditions.push(Condition { op, key, operand });
            }
        }
        Ok(conditions)
    }

    /// Whether the condition holds for the request.
    pub(super) fn holds(&self, ctx: &RequestContext) -> bool {
        let values = self.key.lookup(ctx);
        if self.op.family == Family::Null {
            let present = !values.is_empty();
            // "true" asks for the key to be absent.
            return match &self.operand {
                Operand::Bools(wants) => wants.iter().any(|&absent| absent != present),
                _ => false,
            };
        }
        if values.is_empty() {
            return match self.op.set {
                None => self.op.if_exists || self.op.negated,
                Some(SetQualifier::ForAnyValue) => self.op.if_exists,
                Some(SetQualifier::ForAllValues) => true,
            };
        }
        let value_holds = |v: &RequestValue| self.matches_any(v) != self.op.negated;
        match self.op.set {
            // Single-valued keys carry exactly one value.
            None | Some(SetQualifier::ForAllValues) => values.iter().all(value_holds),
            Some(SetQualifier::ForAnyValue) => values.iter().any(value_holds),
        }
    }

    /// Whether the request value equals/matches/compares to any of the condition's values.
    fn matches_any(&self, value: &RequestValue) -> bool {
        match (&self.operand, self.op.family) {
            (Operand::Strings(wants), family) => {
                let Some(text) = value.text() else {
                    return false;
                };
                let text = if family == Family::StringIgnoreCase || self.key.is_hex() {
                    Cow::Owned(text.to_lowercase())
                } else {
                    text
                };
                wants.iter().any(|want| match family {
                    Family::StringLike => super::pattern::wildcard_match(want, &text),
                    _ => *want == *text,
                })
            }
            (Operand::Numbers(wants), Family::Numeric(cmp)) => {
                let Some(n) = value.text().and_then(|t| Decimal::parse(&t)) else {
                    return false;
                };
                wants.iter().any(|want| cmp.accepts(n.cmp(want)))
            }
            (Operand::Dates(wants), Family::Date(cmp)) => {
                let Some(t) = value.nanos() else {
                    return false;
                };
                wants.iter().any(|want| cmp.accepts(t.cmp(want)))
            }
            (Operand::Bools(wants), Family::Bool) => {
                let Some(b) = value.text().and_then(|t| parse_bool(&t)) else {
                    return false;
                };
                wants.contains(&b)
            }
            // The parser pairs each family with its operand.
            _ => false,
        }
    }
}

/// A value or a non-empty list of values; numbers and booleans are taken as their text.
fn condition_values(path: &str, node: &Node) -> Result<Vec<String>, PolicyError> {
    let one = |node: &Node| match node {
        Node::String(s) => node::bounded(path, s).map(|()| s.clone()),
        Node::Number(n) => Ok(n.clone()),
        Node::Bool(b) => Ok(b.to_string()),
        other => Err(invalid(
            path,
            format!(
                "expected a string, number or boolean, found {}",
                other.type_name()
            ),
        )),
    };
    match node {
        Node::Array(items) => {
            if items.is_empty() {
                return Err(invalid(path, "empty list"));
            }
            if items.len() > MAX_LIST_VALUES {
                return Err(PolicyError::TooMany {
                    path: path.to_owned(),
                    what: "values",
                    limit: MAX_LIST_VALUES,
                });
            }
            items.iter().map(one).collect()
        }
        other => Ok(vec![one(other)?]),
    }
}

impl Operand {
    fn parse(
        path: &str,
        family: Family,
        key: &ConditionKey,
        raw: Vec<String>,
    ) -> Result<Operand, PolicyError> {
        let each = |f: &dyn Fn(&str) -> Option<()>, what: &str| {
            raw.iter().try_for_each(|v| {
                f(v).ok_or_else(|| invalid(path, format!("{:?} is not {what}", shown(v))))
            })
        };
        Ok(match family {
            Family::String | Family::StringLike if key.is_hex() => {
                Operand::Strings(raw.iter().map(|v| v.to_ascii_lowercase()).collect())
            }
            Family::String | Family::StringLike => Operand::Strings(raw),
            Family::StringIgnoreCase => {
                Operand::Strings(raw.iter().map(|v| v.to_lowercase()).collect())
            }
            Family::Numeric(_) => {
                each(&|v| Decimal::parse(v).map(|_| ()), "a number")?;
                Operand::Numbers(raw.iter().filter_map(|v| Decimal::parse(v)).collect())
            }
            Family::Date(_) => {
                each(
                    &|v| parse_date(v).map(|_| ()),
                    "a date (ISO 8601 or epoch seconds)",
                )?;
                Operand::Dates(raw.iter().filter_map(|v| parse_date(v)).collect())
            }
            Family::Bool | Family::Null => {
                each(&|v| parse_bool(v).map(|_| ()), "true or false")?;
                Operand::Bools(raw.iter().filter_map(|v| parse_bool(v)).collect())
            }
        })
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// ISO 8601 as RFC 3339 (`2024-05-01T12:00:00Z`, with an offset or fraction), a date
/// (`2024-05-01`, midnight UTC), or epoch seconds (`1714564800`); as nanoseconds since the epoch.
fn parse_date(s: &str) -> Option<i128> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|secs| i128::from(secs).checked_mul(1_000_000_000));
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    let day = Date::parse(s, format_description!("[year]-[month]-[day]")).ok()?;
    Some(day.midnight().assume_utc().unix_timestamp_nanos())
}

/// An exact decimal number (`-12`, `3.25`), compared without floating point.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// Integer digits without leading zeros.
    int: String,
    /// Fraction digits without trailing zeros.
    frac: String,
}

impl Decimal {
    fn parse(s: &str) -> Option<Decimal> {
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty()
            || !digits(int)
            || !digits(frac)
            || (body.contains('.') && frac.is_empty())
        {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        // -0 is 0.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal {
            negative,
            int,
            frac,
        })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_date, Decimal};
    use std::cmp::Ordering;

    #[test]
    fn decimals_compare_exactly() {
        let d = |s| Decimal::parse(s).expect("test literal is a number");
        assert_eq!(
            d("9007199254740993").cmp(&d("9007199254740992")),
            Ordering::Greater
        );
        assert_eq!(d("0.5").cmp(&d("0.51")), Ordering::Less);
        assert_eq!(d("0.6").cmp(&d("0.51")), Ordering::Greater);
        assert_eq!(d("-0").cmp(&d("0.000")), Ordering::Equal);
        assert_eq!(d("-2").cmp(&d("-10")), Ordering::Greater);
        assert_eq!(d("007").cmp(&d("7.0")), Ordering::Equal);
        for bad in ["", "-", "1.", ".5", "1e3", "0x10", "1.2.3", " 1"] {
            assert!(Decimal::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("0"), Some(0));
        assert_eq!(parse_date("1714564800"), Some(1_714_564_800_000_000_000));
        assert_eq!(
            parse_date("2024-05-01T12:00:00Z"),
            Some(1_714_564_800_000_000_000)
        );
        assert_eq!(
            parse_date("2024-05-01T14:00:00+02:00"),
            Some(1_714_564_800_000_000_000)
        );
        assert_eq!(parse_date("2024-05-01"), Some(1_714_521_600_000_000_000));
        for bad in ["yesterday", "2024-13-01", "2024-05-01T12:00:00", ""] {
            assert!(parse_date(bad).is_none(), "{bad:?}");
        }
    }
}
