//! The guarded key store: every way to a key or an alias authorizes on the way.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use super::{Conditions, Ctx};
use crate::env::Millis;
use crate::error::{KmsError, KmsResult};
use crate::keys::{Alias, Key, KeyStore, Rotation};
use crate::access::policy::grants::{self, Grant, GrantConstraints, GrantOperation};

/// A key resolved or authorized under this lock is gone under it: a bug, answered as one.
const VANISHED: KmsError = KmsError::Internal("a key vanished under the lock");

/// Each guard's serial: a proof is honoured only by the guard that made it.
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A serial no other guard has.
pub(super) fn next_serial() -> u64 {
    SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// Proof that the caller may perform the operation's action on one key, made under the lock
/// of one [`Keys`] guard. Only the authorizer constructs it; it is neither `Clone` nor usable
/// under another guard.
#[derive(Debug)]
pub struct Authorized {
    id: Uuid,
    serial: u64,
}

/// Proof that the caller may perform the operation's action on one alias name.
#[derive(Debug)]
pub struct AuthorizedAlias {
    name: String,
    serial: u64,
}

/// Guarded access to the key store under one lock (read or write). What a write guard changed
/// ([`Keys::touch`]) is queued for the durable store as the guard is released, before its lock
/// is: no request can see the change and be answered before it is durable.
pub struct Keys<'c, G> {
    ctx: &'c Ctx<'c>,
    store: G,
    serial: u64,
    touched: Vec<crate::kms::state::Touched>,
}

impl<G> Drop for Keys<'_, G> {
    fn drop(&mut self) {
        // Runs before the fields drop: the lock is still held.
        self.ctx.flush(std::mem::take(&mut self.touched));
    }
}

impl<'c, G: Deref<Target = KeyStore>> Keys<'c, G> {
    pub(super) fn new(ctx: &'c Ctx<'c>, store: G) -> Self {
        Keys {
            ctx,
            store,
            serial: next_serial(),
            touched: Vec::new(),
        }
    }

    fn mine(&self, serial: u64) -> KmsResult<()> {
        if serial == self.serial {
            Ok(())
        } else {
            Err(KmsError::Internal("a proof used under another lock"))
        }
    }

    /// The id of the live key a `KeyId`-shaped member names (key id, key ARN, alias name or
    /// alias ARN), for comparing with a key already authorized. Gives access to nothing.
    ///
    /// # Errors
    /// `ValidationException`, `NotFoundException`.
    pub fn id_of(&self, field: &str, key_id: &str) -> KmsResult<Uuid> {
        self.store
            .resolve(field, key_id, self.ctx.config, self.ctx.env.now())
            .map(|k| k.id)
    }

    /// Resolves a `KeyId`-shaped member and authorizes `kms:<action>` on the key it names.
    ///
    /// # Errors
    /// `ValidationException`, `NotFoundException`, `AccessDeniedException`.
    pub fn authorize(
        &self,
        field: &str,
        key_id: &str,
        action: &'static str,
        conditions: &Conditions<'_>,
    ) -> KmsResult<Authorized> {
        self.ctx.declared(action)?;
        let id = self.id_of(field, key_id)?;
        self.authorize_id(id, action, conditions)?.ok_or(VANISHED)
    }

    /// Authorizes `kms:<action>` on the live key with this id (named by a ciphertext or a
    /// grant token); `None` when there is no such key.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn authorize_id(
        &self,
        id: Uuid,
        action: &'static str,
        conditions: &Conditions<'_>,
    ) -> KmsResult<Option<Authorized>> {
        self.ctx.declared(action)?;
        let Some(key) = self.store.by_id(&id, self.ctx.env.now()) else {
            return Ok(None);
        };
        self.ctx.check_key(action, key, conditions)?;
        self.ctx.note_allowed();
        Ok(Some(Authorized {
            id,
            serial: self.serial,
        }))
    }

    /// The authorized key.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn get(&self, proof: &Authorized) -> KmsResult<&Key> {
        self.mine(proof.serial)?;
        self.store.raw(&proof.id).ok_or(VANISHED)
    }

    /// [`Keys::authorize`], then the key.
    ///
    /// # Errors
    /// As [`Keys::authorize`].
    pub fn key(
        &self,
        field: &str,
        key_id: &str,
        action: &'static str,
        conditions: &Conditions<'_>,
    ) -> KmsResult<&Key> {
        let proof = self.authorize(field, key_id, action, conditions)?;
        self.get(&proof)
    }

    /// Authorizes `kms:<action>` on an alias name (`arn:aws:kms:..:alias/NAME`): aliases have
    /// no resource policy, so the identity policy alone decides.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn authorize_alias(&self, name: &str, action: &'static str) -> KmsResult<AuthorizedAlias> {
        self.ctx.declared(action)?;
        self.ctx
            .check_identity(&format!("kms:{action}"), &self.ctx.config.alias_arn(name))?;
        self.ctx.note_allowed();
        Ok(AuthorizedAlias {
            name: name.to_owned(),
            serial: self.serial,
        })
    }

    /// The authorized alias, when it exists and points at a live key.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn alias(&self, proof: &AuthorizedAlias) -> KmsResult<Option<&Alias>> {
        self.mine(proof.serial)?;
        let now = self.ctx.env.now();
        Ok(self
            .store
            .alias(&proof.name)
            .filter(|a| self.store.by_id(&a.target, now).is_some()))
    }

    /// The whole store, for the account-level operations (ListKeys, ListAliases,
    /// ListRetirableGrants) once [`Ctx::authorize_account`] allowed them.
    ///
    /// # Errors
    /// `KMSInternalException` when the account action was not authorized.
    pub fn listing(&self) -> KmsResult<&KeyStore> {
        self.ctx.account_allowed()?;
        Ok(&self.store)
    }

    /// Authorizes CreateGrant on a key: by the policies (with `kms:GrantOperations`), or by a
    /// grant of the caller's that includes CreateGrant and is at least as broad as the new
    /// grant (its operations and constraints), as AWS allows.
    ///
    /// # Errors
    /// `ValidationException`, `NotFoundException`, `AccessDeniedException`.
    pub fn authorize_create_grant(
        &self,
        field: &str,
        key_id: &str,
        names: &[String],
        operations: &[GrantOperation],
        constraints: Option<&GrantConstraints>,
    ) -> KmsResult<Authorized> {
        const ACTION: &str = "CreateGrant";
        self.ctx.declared(ACTION)?;
        let id = self.id_of(field, key_id)?;
        let key = self.store.by_id(&id, self.ctx.env.now()).ok_or(VANISHED)?;
        let conditions = Conditions {
            grant_operations: Some(names),
            ..Conditions::default()
        };
        if !self.ctx.policies_allow(ACTION, key, &conditions)? {
            let key_uuid = key.id.to_string();
            let by_grant = key.grants.for_grantee(&self.ctx.caller.arn).any(|parent| {
                grants::grant_allows(parent, &key_uuid, &self.ctx.caller.arn, ACTION, None)
                    && operations.iter().all(|op| parent.operations.contains(op))
                    && grants::child_constraints_allowed(parent.constraints.as_ref(), constraints)
            });
            if !by_grant {
                return Err(self.ctx.not_allowed(ACTION, key));
            }
        }
        self.ctx.note_allowed();
        Ok(Authorized {
            id,
            serial: self.serial,
        })
    }

    /// Authorizes RetireGrant of one grant of a live key: its retiring principal, its grantee
    /// when it includes RetireGrant, or a principal whose policies allow `kms:RetireGrant` on
    /// the key. `None` when there is no such key.
    ///
    /// # Errors
    /// `NotFoundException` for a grant that is not on the key (only to a caller the policies
    /// allow); `AccessDeniedException`.
    pub fn authorize_retire(&self, id: Uuid, grant_id: &str) -> KmsResult<Option<Authorized>> {
        const ACTION: &str = "RetireGrant";
        self.ctx.declared(ACTION)?;
        let Some(key) = self.store.by_id(&id, self.ctx.env.now()) else {
            return Ok(None);
        };
        let grant: Option<&Grant> = key.grant(grant_id);
        // The policies are asked first: an explicit deny wins over the grant.
        let by_policy = self
            .ctx
            .policies_allow(ACTION, key, &Conditions::default())?;
        let by_grant = grant.is_some_and(|g| grants::may_retire(g, &self.ctx.caller.arn));
        if !by_grant && !by_policy {
            return Err(self.ctx.not_allowed(ACTION, key));
        }
        if grant.is_none() {
            return Err(KmsError::NotFound(format!(
                "Grant {grant_id} does not exist on key {}",
                self.ctx.config.key_arn(&key.id)
            )));
        }
        self.ctx.note_allowed();
        Ok(Some(Authorized {
            id,
            serial: self.serial,
        }))
    }
}

/// The most one request can grow the state by (a 32 KiB policy, 50 tags, an 8 KiB
/// description, a grant, with their overhead): what [`Keys::ensure_room`] keeps free.
pub const MAX_GROWTH: usize = 96 * 1024;

impl<'c, G: DerefMut<Target = KeyStore>> Keys<'c, G> {
    /// Notes that this request changed a record under this guard (and counts again what the
    /// key takes in memory).
    pub fn touch(&mut self, t: crate::kms::state::Touched) {
        if let crate::kms::state::Touched::Key(id) | crate::kms::state::Touched::Grant(id, _) = &t {
            self.store.recount(id);
        }
        self.touched.push(t);
    }

    /// Refuses an operation that grows the state when the memory budget has less than
    /// [`MAX_GROWTH`] left; operations that shrink it (disable, delete, revoke, untag) never
    /// call this, so a full enclave can always be cleaned up.
    ///
    /// # Errors
    /// `LimitExceededException`.
    pub fn ensure_room(&self) -> KmsResult<()> {
        let budget = self.ctx.config.memory_budget;
        let used = self.store.bytes();
        if used.saturating_add(MAX_GROWTH) > budget {
            return Err(KmsError::LimitExceeded(format!(
                "ekms is at its memory budget ({} of {} MiB): delete keys, grants, tags or aliases, or give the enclave more memory.",
                used / (1024 * 1024),
                budget / (1024 * 1024)
            )));
        }
        Ok(())
    }

    /// The authorized key, for changing it.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn get_mut(&mut self, proof: &Authorized) -> KmsResult<&mut Key> {
        self.mine(proof.serial)?;
        self.store.raw_mut(&proof.id).ok_or(VANISHED)
    }

    /// [`Keys::authorize`], then the key for changing it.
    ///
    /// # Errors
    /// As [`Keys::authorize`].
    pub fn key_mut(
        &mut self,
        field: &str,
        key_id: &str,
        action: &'static str,
        conditions: &Conditions<'_>,
    ) -> KmsResult<&mut Key> {
        let proof = self.authorize(field, key_id, action, conditions)?;
        self.get_mut(&proof)
    }

    /// Adds a key the caller creates (CreateKey, once [`Ctx::authorize_account`] allowed it).
    ///
    /// # Errors
    /// `LimitExceededException`; `KMSInternalException` without the account authorization.
    pub fn insert(&mut self, mut key: Key) -> KmsResult<()> {
        self.ctx.account_allowed()?;
        self.ensure_room()?;
        let arn = &self.ctx.caller.arn;
        let quota = self.ctx.config.quotas.keys_per_principal;
        if self.store.keys_created_by(arn) >= quota {
            return Err(KmsError::LimitExceeded(format!(
                "{arn} has created {quota} keys, its quota: schedule the deletion of keys it no longer needs."
            )));
        }
        key.creator = Some(arn.clone());
        self.store.insert(key, self.ctx.config)
    }

    /// Schedules the authorized key's destruction at `date`.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn schedule_deletion(&mut self, proof: &Authorized, date: Millis) -> KmsResult<()> {
        self.mine(proof.serial)?;
        self.store
            .schedule_deletion(&proof.id, date, self.ctx.config)
    }

    /// Cancels the authorized key's scheduled destruction.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn cancel_deletion(&mut self, proof: &Authorized) -> KmsResult<()> {
        self.mine(proof.serial)?;
        self.store.cancel_deletion(&proof.id, self.ctx.config)
    }

    /// Sets or clears the authorized key's automatic rotation.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn set_rotation(
        &mut self,
        proof: &Authorized,
        rotation: Option<Rotation>,
    ) -> KmsResult<&mut Key> {
        self.mine(proof.serial)?;
        self.store.set_rotation(&proof.id, rotation).ok_or(VANISHED)
    }

    /// Puts the authorized key in the expiry index by its material's `ValidTo`s, after its
    /// material changed ([`crate::keys::KeyStore::refresh_expiry`]).
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn refresh_expiry(&mut self, proof: &Authorized) -> KmsResult<&mut Key> {
        self.mine(proof.serial)?;
        self.store.refresh_expiry(&proof.id).ok_or(VANISHED)
    }

    /// Points the authorized alias at the authorized key (creating it if need be).
    ///
    /// # Errors
    /// `LimitExceededException`; `KMSInternalException` for a proof of another guard.
    pub fn put_alias(
        &mut self,
        alias: &AuthorizedAlias,
        target: &Authorized,
        created: Millis,
        updated: Millis,
    ) -> KmsResult<()> {
        self.mine(alias.serial)?;
        self.mine(target.serial)?;
        self.ensure_room()?;
        // A new alias counts against its creator's quota; a re-pointed one keeps its creator.
        let creator = match self.store.alias(&alias.name) {
            Some(existing) => existing.creator.clone(),
            None => {
                let arn = &self.ctx.caller.arn;
                let quota = self.ctx.config.quotas.aliases_per_principal;
                if self.store.aliases_created_by(arn) >= quota {
                    return Err(KmsError::LimitExceeded(format!(
                        "{arn} has created {quota} aliases, its quota: delete aliases it no longer needs."
                    )));
                }
                Some(arn.clone())
            }
        };
        self.store.put_alias(
            alias.name.clone(),
            Alias {
                target: target.id,
                created,
                updated,
                creator,
            },
            self.ctx.config,
        )
    }

    /// Once the principal `arn` (unique id `id`) is deleted, under the proof that allowed the
    /// deletion: every grant and key policy that named its ARN names its unique id instead, as
    /// IAM shows, so a principal created again under the name inherits none of them. Returns the
    /// records changed (the caller touches them).
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of anything but DeletePrincipal.
    pub fn forget_principal(
        &mut self,
        proof: &super::AuthorizedPrincipal,
        arn: &str,
        id: &str,
    ) -> KmsResult<Vec<crate::kms::state::Touched>> {
        if proof.action() != "DeletePrincipal" || self.ctx.config.user_arn(proof.name()) != arn {
            return Err(KmsError::Internal(
                "forgetting a principal without its deletion",
            ));
        }
        let mut changed = Vec::new();
        for key in self.store.all_mut() {
            for grant_id in key.grants.rename_principal(arn, id) {
                changed.push(crate::kms::state::Touched::Grant(key.id, grant_id));
            }
            if let Some(text) = &key.policy {
                if let Some(rewritten) = crate::access::policy::replace_principal(text, arn, id) {
                    key.policy = Some(rewritten);
                    changed.push(crate::kms::state::Touched::Key(key.id));
                }
            }
        }
        Ok(changed)
    }

    /// Removes the authorized alias; whether it existed.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn remove_alias(&mut self, alias: &AuthorizedAlias) -> KmsResult<bool> {
        self.mine(alias.serial)?;
        Ok(self.store.remove_alias(&alias.name))
    }
}
