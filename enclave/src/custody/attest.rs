//! The attester seam: who signs the enclave's attestation documents.
//!
//! - [`NsmAttester`]: the Nitro Security Module (`/dev/nsm`), inside a real enclave.
//! - [`insecure::MockAttester`]: documents signed by a mock CA made for development; they
//!   verify only against that mock root, never against the AWS root.
//!
//! `main` picks one in one place; both are always compiled.

use serde_bytes::ByteBuf;

pub use crate::env::{AttestError, Attester};

/// The Nitro Security Module.
#[derive(Debug)]
pub struct NsmAttester {
    fd: i32,
}

impl NsmAttester {
    /// Opens `/dev/nsm`.
    ///
    /// # Errors
    /// [`AttestError::NsmUnavailable`] outside a Nitro enclave.
    pub fn open() -> Result<Self, AttestError> {
        let fd = aws_nitro_enclaves_nsm_api::driver::nsm_init();
        if fd < 0 {
            return Err(AttestError::NsmUnavailable);
        }
        Ok(NsmAttester { fd })
    }
}

impl Drop for NsmAttester {
    fn drop(&mut self) {
        aws_nitro_enclaves_nsm_api::driver::nsm_exit(self.fd);
    }
}

impl Attester for NsmAttester {
    fn attest(
        &self,
        user_data: Option<&[u8]>,
        nonce: Option<&[u8]>,
        public_key: Option<&[u8]>,
    ) -> Result<Vec<u8>, AttestError> {
        use aws_nitro_enclaves_nsm_api::api::{Request, Response};
        let request = Request::Attestation {
            user_data: user_data.map(|b| ByteBuf::from(b.to_vec())),
            nonce: nonce.map(|b| ByteBuf::from(b.to_vec())),
            public_key: public_key.map(|b| ByteBuf::from(b.to_vec())),
        };
        match aws_nitro_enclaves_nsm_api::driver::nsm_process_request(self.fd, request) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(AttestError::Nsm(format!("{code:?}"))),
            _ => Err(AttestError::Nsm("unexpected response".to_owned())),
        }
    }

    fn is_secure(&self) -> bool {
        true
    }
}

/// Attesters that prove nothing, for development and CI.
pub mod insecure {
    use super::{AttestError, Attester};

    /// Wraps the shared mock attester (mock CA, PCRs from the enclave binary's bytes).
    #[derive(Debug)]
    pub struct MockAttester(pub ekms_shared::attestation::insecure::MockAttester);

    impl Attester for MockAttester {
        fn attest(
            &self,
            user_data: Option<&[u8]>,
            nonce: Option<&[u8]>,
            public_key: Option<&[u8]>,
        ) -> Result<Vec<u8>, AttestError> {
            Ok(self.0.attest(user_data, nonce, public_key)?)
        }

        fn is_secure(&self) -> bool {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsm_is_unavailable_outside_an_enclave() {
        if std::path::Path::new("/dev/nsm").exists() {
            return; // inside a real enclave: covered by the ignored test below
        }
        assert!(matches!(
            NsmAttester::open(),
            Err(AttestError::NsmUnavailable)
        ));
    }

    #[test]
    #[ignore = "needs /dev/nsm (a real Nitro enclave)"]
    #[allow(clippy::unwrap_used)]
    fn nsm_attests_inside_an_enclave() {
        let nsm = NsmAttester::open().unwrap();
        let doc = nsm.attest(Some(b"u"), Some(b"n"), Some(b"k")).unwrap();
        assert!(doc.len() > 1000);
        assert!(nsm.is_secure());
    }
}
