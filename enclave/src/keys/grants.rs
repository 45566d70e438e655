//! A key's grants, indexed for every question asked of them, so that no operation's cost grows
//! with the number of grants on the key.
//!
//! - by id: RetireGrant, RevokeGrant, grant tokens (hash map);
//! - in creation order (`(creation date, grant id)`, the ListGrants position): paging;
//! - by grantee: authorization (a request is checked against the caller's grants only), the
//!   per-grantee limit, the `GranteePrincipal` filter of ListGrants and CreateGrant's retry by
//!   name;
//! - by retiring principal: ListRetirableGrants.
//!
//! Each grant is a sealed record of its own (`RecordKind::Grant`), so a change to one grant
//! commits one record whatever the number on the key.

use std::collections::{BTreeSet, HashMap};

use crate::env::Millis;
use crate::access::policy::Grant;

/// A grant's place in its key's listing: creation date, then grant id.
pub type Position = (Millis, String);

/// The grants on one key.
#[derive(Debug, Default, Clone)]
pub struct Grants {
    by_id: HashMap<String, Grant>,
    order: BTreeSet<Position>,
    by_grantee: HashMap<String, BTreeSet<Position>>,
    by_retiring: HashMap<String, BTreeSet<Position>>,
    /// The sum of [`footprint`] over the grants.
    bytes: usize,
}

/// What one grant costs in memory, estimated generously (its strings, its places in the
/// indexes, allocator slack).
pub fn footprint(g: &Grant) -> usize {
    const INDEXES: usize = 4 * 96;
    g.grant_id.len() * 4
        + g.key_id.len()
        + g.name.as_ref().map_or(0, String::len)
        + g.grantee_principal.len() * 2
        + g.retiring_principal.as_ref().map_or(0, |r| r.len() * 2)
        + g.issuing_account.len()
        + g.operations.len()
        + g.constraints.as_ref().map_or(0, |c| {
            [&c.encryption_context_equals, &c.encryption_context_subset]
                .into_iter()
                .flatten()
                .flat_map(|m| m.iter())
                .map(|(k, v)| k.len() + v.len() + 64)
                .sum()
        })
        + 512
        + INDEXES
}

fn position(g: &Grant) -> Position {
    (g.creation_date, g.grant_id.clone())
}

fn unindex(index: &mut HashMap<String, BTreeSet<Position>>, who: &str, at: &Position) {
    if let Some(set) = index.get_mut(who) {
        set.remove(at);
        if set.is_empty() {
            index.remove(who);
        }
    }
}

impl Grants {
    /// How many grants.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The estimated memory they take.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The grant with this id.
    pub fn get(&self, grant_id: &str) -> Option<&Grant> {
        self.by_id.get(grant_id)
    }

    /// Adds `grant`, replacing one with the same id (the one replaced is returned).
    pub fn insert(&mut self, grant: Grant) -> Option<Grant> {
        let old = self.remove(&grant.grant_id);
        let at = position(&grant);
        self.order.insert(at.clone());
        self.by_grantee
            .entry(grant.grantee_principal.clone())
            .or_default()
            .insert(at.clone());
        if let Some(r) = &grant.retiring_principal {
            self.by_retiring.entry(r.clone()).or_default().insert(at);
        }
        self.bytes = self.bytes.saturating_add(footprint(&grant));
        self.by_id.insert(grant.grant_id.clone(), grant);
        old
    }

    /// Removes the grant with this id; the grant if it existed.
    pub fn remove(&mut self, grant_id: &str) -> Option<Grant> {
        let grant = self.by_id.remove(grant_id)?;
        let at = position(&grant);
        self.order.remove(&at);
        unindex(&mut self.by_grantee, &grant.grantee_principal, &at);
        if let Some(r) = &grant.retiring_principal {
            unindex(&mut self.by_retiring, r, &at);
        }
        self.bytes = self.bytes.saturating_sub(footprint(&grant));
        Some(grant)
    }

    fn at(&self, at: &Position) -> Option<&Grant> {
        self.by_id.get(&at.1)
    }

    /// Every grant, in position order.
    pub fn iter(&self) -> impl Iterator<Item = &Grant> + '_ {
        self.order.iter().filter_map(|at| self.at(at))
    }

    /// The ids of every grant (to delete their records with the key).
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.by_id.keys().map(String::as_str)
    }

    /// The grants whose grantee is exactly `principal`, in position order.
    pub fn for_grantee<'a>(&'a self, principal: &str) -> impl Iterator<Item = &'a Grant> + 'a {
        self.by_grantee
            .get(principal)
            .into_iter()
            .flatten()
            .filter_map(|at| self.at(at))
    }

    /// How many grants `principal` is the grantee of.
    pub fn count_for_grantee(&self, principal: &str) -> usize {
        self.by_grantee.get(principal).map_or(0, BTreeSet::len)
    }

    /// From `from` on (inclusive), in position order: all grants, or those whose grantee is
    /// `grantee`, or those whose retiring principal is `retiring` (not both: `grantee` wins).
    pub fn page<'a>(
        &'a self,
        from: Option<&Position>,
        grantee: Option<&str>,
        retiring: Option<&str>,
    ) -> Box<dyn Iterator<Item = &'a Grant> + 'a> {
        let set = match (grantee, retiring) {
            (Some(g), _) => match self.by_grantee.get(g) {
                Some(set) => set,
                None => return Box::new(std::iter::empty()),
            },
            (None, Some(r)) => match self.by_retiring.get(r) {
                Some(set) => set,
                None => return Box::new(std::iter::empty()),
            },
            (None, None) => &self.order,
        };
        let range: Box<dyn Iterator<Item = &Position>> = match from {
            Some(from) => Box::new(set.range(from.clone()..)),
            None => Box::new(set.iter()),
        };
        Box::new(range.filter_map(|at| self.at(at)))
    }

    /// Rewrites `arn` to `id` wherever it is a grant's grantee or retiring principal (the
    /// principal was deleted, as IAM shows it); the ids of the grants changed.
    pub fn rename_principal(&mut self, arn: &str, id: &str) -> Vec<String> {
        let mut changed: BTreeSet<String> = BTreeSet::new();
        for index in [&self.by_grantee, &self.by_retiring] {
            if let Some(set) = index.get(arn) {
                changed.extend(set.iter().map(|at| at.1.clone()));
            }
        }
        for grant_id in &changed {
            if let Some(mut grant) = self.remove(grant_id) {
                if grant.grantee_principal == arn {
                    id.clone_into(&mut grant.grantee_principal);
                }
                if grant.retiring_principal.as_deref() == Some(arn) {
                    grant.retiring_principal = Some(id.to_owned());
                }
                self.insert(grant);
            }
        }
        changed.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::policy::grants::GrantOperation;

    fn grant(id: &str, created: Millis, grantee: &str, retiring: Option<&str>) -> Grant {
        Grant {
            grant_id: id.to_owned(),
            key_id: "k".to_owned(),
            name: None,
            grantee_principal: grantee.to_owned(),
            retiring_principal: retiring.map(str::to_owned),
            operations: vec![GrantOperation::Encrypt],
            constraints: None,
            issuing_account: "111122223333".to_owned(),
            creation_date: created,
        }
    }

    #[test]
    fn indexes_follow_inserts_removes_and_renames() {
        let mut g = Grants::default();
        g.insert(grant("b", 2, "arn:alice", Some("arn:bob")));
        g.insert(grant("a", 2, "arn:bob", None));
        g.insert(grant("c", 1, "arn:alice", None));
        let ids = |it: Box<dyn Iterator<Item = &Grant> + '_>| {
            it.map(|g| g.grant_id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(ids(g.page(None, None, None)), ["c", "a", "b"]);
        assert_eq!(ids(g.page(None, Some("arn:alice"), None)), ["c", "b"]);
        assert_eq!(ids(g.page(None, None, Some("arn:bob"))), ["b"]);
        assert_eq!(ids(g.page(Some(&(2, "a".into())), None, None)), ["a", "b"]);
        assert_eq!(g.count_for_grantee("arn:alice"), 2);
        let bytes = g.bytes();
        assert!(bytes > 0);

        assert_eq!(g.rename_principal("arn:bob", "AIDA1"), ["a", "b"]);
        assert_eq!(
            ids(g.page(None, None, Some("arn:bob"))),
            Vec::<String>::new()
        );
        assert_eq!(ids(g.page(None, None, Some("AIDA1"))), ["b"]);
        assert_eq!(ids(g.page(None, Some("AIDA1"), None)), ["a"]);
        assert_eq!(g.count_for_grantee("arn:bob"), 0);

        assert!(g.remove("b").is_some());
        assert!(g.remove("b").is_none());
        assert_eq!(g.count_for_grantee("arn:alice"), 1);
        assert_eq!(ids(g.page(None, None, Some("AIDA1"))), Vec::<String>::new());
        g.remove("a");
        g.remove("c");
        assert!(g.is_empty());
        assert_eq!(g.bytes(), 0);
        assert!(g.by_grantee.is_empty() && g.by_retiring.is_empty() && g.order.is_empty());
    }

    #[test]
    fn replacing_a_grant_keeps_one_entry() {
        let mut g = Grants::default();
        g.insert(grant("a", 1, "arn:alice", None));
        let again = g.insert(grant("a", 1, "arn:carol", None));
        assert!(again.is_some());
        assert_eq!(g.len(), 1);
        assert_eq!(g.count_for_grantee("arn:alice"), 0);
        assert_eq!(g.count_for_grantee("arn:carol"), 1);
    }
}
