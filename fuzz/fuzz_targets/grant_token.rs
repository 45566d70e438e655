//! Grant tokens (`ops::create_grant::parse_grant_token`, and `ops::grant_tokens` over a list),
//! grant ids and principals (`check_grant_id`, `check_principal`), and grant operations and
//! constraints (`policy::grants`).
//!
//! Checks: no panic; a token that parses is the one `grant_token` makes for the key and grant
//! it names (one token per grant); a grant id `check_grant_id` accepts makes a token; and
//! constraints that `child_constraints_allowed` lets a child grant have are at least as strict
//! as its parent's: every encryption context the child's constraints accept, the parent's
//! accept too.

#![no_main]

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use ekms_enclave::kms::ops::create_grant::{check_grant_id, check_principal, grant_token, parse_grant_token};
use ekms_enclave::access::policy::grants::{
    child_constraints_allowed, validate_constraints, validate_operations,
};
use ekms_enclave::access::policy::grants::{GrantConstraints, GrantOperation};
use libfuzzer_sys::fuzz_target;

fn small_map(u: &mut Unstructured<'_>) -> BTreeMap<String, String> {
    (0..u.int_in_range(0..=3u8).unwrap_or(0))
        .map(|_| {
            let k = *u.choose(&["k", "K", "a", "A", "", "ß", "SS"]).unwrap_or(&"k");
            let v = *u.choose(&["v", "V", "", "w"]).unwrap_or(&"v");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn constraints(u: &mut Unstructured<'_>) -> Option<GrantConstraints> {
    if !u.ratio(3, 4).unwrap_or(true) {
        return None;
    }
    Some(GrantConstraints {
        encryption_context_equals: u.arbitrary::<bool>().unwrap_or(false).then(|| small_map(u)),
        encryption_context_subset: u.arbitrary::<bool>().unwrap_or(false).then(|| small_map(u)),
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let token: String = u.arbitrary().unwrap_or_default();
    if let Ok((key, grant)) = parse_grant_token("grantToken", &token) {
        let again = grant_token(&key, &grant).expect("a parsed token names a grant id");
        assert_eq!(again, token, "two tokens for one grant");
    }
    let _ = ekms_enclave::kms::ops::grant_tokens(Some(&[token.clone(), token]));
    let id: String = u.arbitrary().unwrap_or_default();
    if check_grant_id("grantId", &id).is_ok() {
        let key = uuid::Uuid::from_bytes(u.arbitrary().unwrap_or_default());
        let token = grant_token(&key, &id).expect("a valid grant id makes a token");
        assert_eq!(parse_grant_token("t", &token).expect("a made token parses"), (key, id));
    }
    let principal: String = u.arbitrary().unwrap_or_default();
    let _ = check_principal("granteePrincipal", &principal);

    let names: Vec<String> = (0..u.int_in_range(0..=4u8).unwrap_or(0))
        .map(|_| {
            if !u.ratio(3, 4).unwrap_or(true) {
                u.arbitrary::<String>().unwrap_or_default()
            } else {
                u.choose(&GrantOperation::ALL)
                    .map(|o| o.as_str().to_owned())
                    .unwrap_or_default()
            }
        })
        .collect();
    let operations = validate_operations(&names).unwrap_or_default();
    let parent = constraints(&mut u);
    let child = constraints(&mut u);
    for c in [&parent, &child].into_iter().flatten() {
        let _ = validate_constraints(&operations, c);
    }
    if child_constraints_allowed(parent.as_ref(), child.as_ref()) {
        if let (Some(parent), Some(child)) = (&parent, &child) {
            // Contexts the child's constraints are likely to accept: its own maps, with
            // other pairs added, and made-up ones.
            let mut contexts: Vec<Option<BTreeMap<String, String>>> = vec![None];
            for base in [&child.encryption_context_equals, &child.encryption_context_subset] {
                let mut c = base.clone().unwrap_or_default();
                contexts.push(Some(c.clone()));
                c.extend(small_map(&mut u));
                contexts.push(Some(c));
            }
            contexts.push(Some(small_map(&mut u)));
            for context in contexts {
                if child.satisfied_by(context.as_ref()) {
                    assert!(
                        parent.satisfied_by(context.as_ref()),
                        "a child grant allowed a context its parent does not: parent {parent:?}, child {child:?}, context {context:?}"
                    );
                }
            }
        }
    }
});
