//! The guarded principals: administration is authorized on the target principal
//! (`arn:aws:iam::<account>:user/<name>`), so an identity policy can scope it by name.

use std::ops::{Deref, DerefMut};

use super::Ctx;
use crate::error::{KmsError, KmsResult};
use crate::access::principals::{ChangeError, Principal, Principals};

/// Proof that the caller may perform the operation's `ekms:` action on one principal name,
/// made under the lock of one [`PrincipalAccess`] guard.
#[derive(Debug)]
pub struct AuthorizedPrincipal {
    name: String,
    action: &'static str,
    serial: u64,
}

impl AuthorizedPrincipal {
    /// The principal's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The action it was authorized for.
    pub fn action(&self) -> &'static str {
        self.action
    }
}

/// Guarded access to the principals under one lock.
pub struct PrincipalAccess<'c, G> {
    ctx: &'c Ctx<'c>,
    principals: G,
    serial: u64,
    touched: Vec<crate::kms::state::Touched>,
}

impl<G> Drop for PrincipalAccess<'_, G> {
    fn drop(&mut self) {
        // Runs before the fields drop: the lock is still held.
        self.ctx.flush(std::mem::take(&mut self.touched));
    }
}

impl<'c, G: Deref<Target = Principals>> PrincipalAccess<'c, G> {
    pub(super) fn new(ctx: &'c Ctx<'c>, principals: G) -> Self {
        PrincipalAccess {
            ctx,
            principals,
            serial: super::keys::next_serial(),
            touched: Vec::new(),
        }
    }

    fn mine(&self, proof: &AuthorizedPrincipal) -> KmsResult<()> {
        if proof.serial == self.serial {
            Ok(())
        } else {
            Err(KmsError::Internal("a proof used under another lock"))
        }
    }

    /// Authorizes `ekms:<action>` on the principal `name`, by the identity policy.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn authorize(&self, name: &str, action: &'static str) -> KmsResult<AuthorizedPrincipal> {
        self.ctx.declared(action)?;
        self.ctx
            .check_identity(&format!("ekms:{action}"), &self.ctx.config.user_arn(name))?;
        self.ctx.note_allowed();
        Ok(AuthorizedPrincipal {
            name: name.to_owned(),
            action,
            serial: self.serial,
        })
    }

    /// Authorizes `ekms:<action>` on `*` (ListPrincipals) and gives the whole set.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn listing(&self, action: &'static str) -> KmsResult<&Principals> {
        self.ctx.declared(action)?;
        self.ctx.check_identity(&format!("ekms:{action}"), "*")?;
        self.ctx.note_allowed();
        Ok(&self.principals)
    }

    /// Authorizes `ekms:<action>` on `*` (ListRefusedRecords) and gives the sealed records the
    /// last unseal refused.
    ///
    /// # Errors
    /// `AccessDeniedException`.
    pub fn refused_records(&self, action: &'static str) -> KmsResult<Vec<String>> {
        self.ctx.declared(action)?;
        self.ctx.check_identity(&format!("ekms:{action}"), "*")?;
        self.ctx.note_allowed();
        Ok(self.ctx.state.refused())
    }

    /// The authorized principal, if it exists.
    ///
    /// # Errors
    /// `KMSInternalException` for a proof of another guard.
    pub fn get(&self, proof: &AuthorizedPrincipal) -> KmsResult<Option<&Principal>> {
        self.mine(proof)?;
        Ok(self.principals.by_name(&proof.name))
    }
}

/// A change refused by the principals, or a proof of another guard.
pub enum Refused {
    /// The principals refused the change.
    Change(ChangeError),
    /// A bug: fail closed.
    Internal(KmsError),
}

impl<'c, G: DerefMut<Target = Principals>> PrincipalAccess<'c, G> {
    /// Notes that this request changed a record under this guard.
    pub fn touch(&mut self, t: crate::kms::state::Touched) {
        self.touched.push(t);
    }

    fn mine_mut(&self, proof: &AuthorizedPrincipal) -> Result<(), Refused> {
        self.mine(proof).map_err(Refused::Internal)
    }

    /// Creates the authorized principal with one access key.
    ///
    /// # Errors
    /// As [`Principals::create`].
    pub fn create(
        &mut self,
        proof: &AuthorizedPrincipal,
        id: String,
        access_key_id: String,
        secret: String,
        policy: Option<String>,
    ) -> Result<&Principal, Refused> {
        self.mine_mut(proof)?;
        self.principals
            .create(
                &proof.name,
                id,
                access_key_id,
                secret,
                policy,
                self.ctx.config,
            )
            .map_err(Refused::Change)
    }

    /// Deletes the authorized principal.
    ///
    /// # Errors
    /// As [`Principals::delete`].
    pub fn delete(&mut self, proof: &AuthorizedPrincipal) -> Result<(), Refused> {
        self.mine_mut(proof)?;
        self.principals.delete(&proof.name).map_err(Refused::Change)
    }

    /// Adds an access key to the authorized principal.
    ///
    /// # Errors
    /// As [`Principals::add_access_key`].
    pub fn add_access_key(
        &mut self,
        proof: &AuthorizedPrincipal,
        access_key_id: String,
        secret: String,
    ) -> Result<(), Refused> {
        self.mine_mut(proof)?;
        self.principals
            .add_access_key(&proof.name, access_key_id, secret)
            .map_err(Refused::Change)
    }

    /// Deletes one access key of the authorized principal.
    ///
    /// # Errors
    /// As [`Principals::delete_access_key`].
    pub fn delete_access_key(
        &mut self,
        proof: &AuthorizedPrincipal,
        access_key_id: &str,
    ) -> Result<(), Refused> {
        self.mine_mut(proof)?;
        self.principals
            .delete_access_key(&proof.name, access_key_id)
            .map_err(Refused::Change)
    }

    /// Replaces the authorized principal's identity policy.
    ///
    /// # Errors
    /// As [`Principals::put_policy`].
    pub fn put_policy(
        &mut self,
        proof: &AuthorizedPrincipal,
        policy: String,
    ) -> Result<(), Refused> {
        self.mine_mut(proof)?;
        self.principals
            .put_policy(&proof.name, policy)
            .map_err(Refused::Change)
    }
}
