//! STS GetCallerIdentity on the KMS endpoint, so that tools which learn their account and ARN
//! from STS before they start (test suites, the AWS CLI's `sts get-caller-identity`) work
//! against ekms for its principals.
//!
//! The AWS query protocol (AWS's "Query protocol" reference; STS API version 2011-06-15): the
//! parameters are form-encoded (`Action=GetCallerIdentity&Version=2011-06-15`) in a POST body
//! or in the query string, the request is signed with SigV4 for the service `sts`, and answers
//! and errors are XML. Only GetCallerIdentity is served; any other action is answered as STS
//! answers an action it does not have (`InvalidAction`).

use crate::error::KmsError;

/// The STS API version this endpoint serves.
pub const VERSION: &str = "2011-06-15";
/// The XML namespace of STS's answers.
const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
/// The one action served.
pub const GET_CALLER_IDENTITY: &str = "GetCallerIdentity";

/// Whether a request uses the query protocol rather than KMS's JSON 1.1: no `X-Amz-Target`,
/// and a form-encoded POST body or a GET with a query string.
pub fn is_query_request(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> bool {
    if headers.contains_key("x-amz-target") || uri.path() != "/" {
        return false;
    }
    if method == http::Method::GET {
        return uri.query().is_some_and(|q| !q.is_empty());
    }
    method == http::Method::POST
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            })
}

/// The action a query request names, checked against the version it asks for.
///
/// # Errors
/// `MissingAction` when `Action` is absent; `InvalidAction` for an action or version this
/// endpoint does not serve (worded as STS words it, `NO_VERSION_SPECIFIED` for no version).
pub fn action(query: Option<&str>, body: &[u8]) -> Result<&'static str, KmsError> {
    let mut action = None;
    let mut version = None;
    let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .chain(form_urlencoded::parse(body));
    for (name, value) in pairs {
        match &*name {
            "Action" if action.is_none() => action = Some(value.into_owned()),
            "Version" if version.is_none() => version = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(action) = action.filter(|a| !a.is_empty()) else {
        return Err(KmsError::MissingAction);
    };
    let version = version.unwrap_or_else(|| "NO_VERSION_SPECIFIED".to_owned());
    if action == GET_CALLER_IDENTITY && version == VERSION {
        return Ok(GET_CALLER_IDENTITY);
    }
    Err(KmsError::UnknownOperation(format!(
        "Could not find operation {action} for version {version}"
    )))
}

/// Who the caller is, as GetCallerIdentity answers it.
pub struct CallerIdentity<'a> {
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: &'a str,
    /// The principal's unique id (`AIDA...`).
    pub user_id: &'a str,
    /// The 12-digit account id.
    pub account: &'a str,
}

/// The GetCallerIdentity answer.
pub fn get_caller_identity_response(identity: &CallerIdentity<'_>, request_id: &str) -> Vec<u8> {
    format!(
        "<GetCallerIdentityResponse xmlns=\"{NAMESPACE}\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        escape(identity.arn),
        escape(identity.user_id),
        escape(identity.account),
        escape(request_id),
    )
    .into_bytes()
}

/// An error in STS's XML shape: `ErrorResponse/Error/{Type,Code,Message}` and `RequestId`.
pub fn error_response(error: &KmsError, request_id: &str) -> Vec<u8> {
    let kind = if error.sts_http_status() >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  \
         <RequestId>{}</RequestId>\n</ErrorResponse>\n",
        error.sts_code(),
        escape(&error.sts_message()),
        escape(request_id),
    )
    .into_bytes()
}

/// XML character data and attribute values (XML 1.0, section 2.4): the five predefined
/// entities.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn is_query(method: &str, uri: &str, headers: &[(&str, &str)]) -> bool {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let parts = builder.body(()).unwrap().into_parts().0;
        is_query_request(&parts.method, &parts.uri, &parts.headers)
    }

    #[test]
    fn query_requests_are_told_from_kms_requests() {
        let form = ("content-type", "application/x-www-form-urlencoded; charset=utf-8");
        assert!(is_query("POST", "/", &[form]));
        assert!(is_query(
            "GET",
            "/?Action=GetCallerIdentity&Version=2011-06-15",
            &[]
        ));
        let json = ("content-type", "application/x-amz-json-1.1");
        let target = ("x-amz-target", "TrentService.Encrypt");
        assert!(!is_query("POST", "/", &[json, target]));
        assert!(!is_query("POST", "/", &[form, target]));
        assert!(!is_query("POST", "/", &[json]));
        assert!(!is_query("POST", "/other", &[form]));
        assert!(!is_query("GET", "/", &[]));
    }

    #[test]
    fn actions_and_versions() {
        assert_eq!(
            action(None, b"Action=GetCallerIdentity&Version=2011-06-15").unwrap(),
            GET_CALLER_IDENTITY
        );
        assert_eq!(
            action(Some("Action=GetCallerIdentity&Version=2011-06-15"), b"").unwrap(),
            GET_CALLER_IDENTITY
        );
        let e = action(None, b"Action=AssumeRole&Version=2011-06-15").unwrap_err();
        assert_eq!(e.sts_code(), "InvalidAction");
        assert_eq!(
            e.sts_message(),
            "Could not find operation AssumeRole for version 2011-06-15"
        );
        let e = action(None, b"Action=GetCallerIdentity").unwrap_err();
        assert_eq!(
            e.sts_message(),
            "Could not find operation GetCallerIdentity for version NO_VERSION_SPECIFIED"
        );
        let e = action(None, b"Version=2011-06-15").unwrap_err();
        assert_eq!(e.sts_code(), "MissingAction");
        assert_eq!(e.sts_http_status(), 400);
    }

    #[test]
    fn answers_are_escaped_xml() {
        let body = get_caller_identity_response(
            &CallerIdentity {
                arn: "arn:aws:iam::111122223333:user/a&b",
                user_id: "AIDAEXAMPLE",
                account: "111122223333",
            },
            "r-1",
        );
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("<Arn>arn:aws:iam::111122223333:user/a&amp;b</Arn>"));
        assert!(body.contains("<UserId>AIDAEXAMPLE</UserId>"));
        assert!(body.contains("<Account>111122223333</Account>"));
        assert!(body.contains("<RequestId>r-1</RequestId>"));
        let error = error_response(
            &KmsError::Auth(crate::error::SigV4Error::UnrecognizedClient),
            "r-2",
        );
        let error = String::from_utf8(error).unwrap();
        assert!(error.contains("<Type>Sender</Type>"));
        assert!(error.contains("<Code>InvalidClientTokenId</Code>"));
        assert!(
            error.contains("<Message>The security token included in the request is invalid.</Message>")
        );
    }
}
