//! The Kubernetes `Status` object that every API error carries, and the classification
//! of it the agent acts on: reason first, HTTP code second (kube-rs does the same).
//! When a body is not a `Status` (a proxy's HTML page, an empty reply), one is
//! synthesised from the HTTP code so callers see a single shape ([`Status::parse`], with
//! the client, which alone reads API replies: this module depends on nothing).

use std::fmt;

/// What happened, as the API server names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// 409 on create: the object is there already (our idempotency key).
    AlreadyExists,
    /// 404.
    NotFound,
    /// 409 on update: a resourceVersion conflict.
    Conflict,
    /// 403: RBAC said no.
    Forbidden,
    /// 422: the object failed validation.
    Invalid,
    /// 401: the token was not accepted.
    Unauthorized,
    /// 429: slow down.
    TooManyRequests,
    /// 500/503/504 and friends.
    ServerError,
    /// Anything else, with its reason string.
    Other(String),
}

/// A parsed or synthesised `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// HTTP status code.
    pub code: u16,
    /// `reason` as sent (may be empty).
    pub reason: String,
    /// `message` as sent, or a synthesised one.
    pub message: String,
    /// `details.retryAfterSeconds`, when present.
    pub retry_after_seconds: Option<u64>,
}

impl Status {
    /// The classification the agent acts on.
    pub fn reason(&self) -> Reason {
        match self.reason.as_str() {
            "AlreadyExists" => return Reason::AlreadyExists,
            "NotFound" => return Reason::NotFound,
            "Conflict" => return Reason::Conflict,
            "Forbidden" => return Reason::Forbidden,
            "Invalid" => return Reason::Invalid,
            "Unauthorized" => return Reason::Unauthorized,
            "TooManyRequests" => return Reason::TooManyRequests,
            "InternalError" | "ServiceUnavailable" | "Timeout" | "ServerTimeout" => return Reason::ServerError,
            _ => {}
        }
        match self.code {
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            409 => Reason::Conflict,
            422 => Reason::Invalid,
            429 => Reason::TooManyRequests,
            500 | 502 | 503 | 504 => Reason::ServerError,
            _ => Reason::Other(self.reason.clone()),
        }
    }

    /// 429, 500, 503 and 504 are retried; the rest need someone to change something.
    pub fn is_transient(&self) -> bool {
        matches!(self.code, 429 | 500 | 502 | 503 | 504)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = if self.reason.is_empty() { "no reason" } else { &self.reason };
        write!(f, "{} {}: {}", self.code, reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_wins_over_code() {
        let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"jobs.batch \"x\" already exists","reason":"AlreadyExists","details":{"name":"x","group":"batch","kind":"jobs"},"code":409}"#;
        let s = Status::parse(409, body);
        assert_eq!(s.reason(), Reason::AlreadyExists);
        assert_eq!(s.message, "jobs.batch \"x\" already exists");
        let conflict = Status::parse(409, r#"{"kind":"Status","reason":"Conflict","code":409}"#);
        assert_eq!(conflict.reason(), Reason::Conflict);
    }

    #[test]
    fn non_status_body_is_synthesised_from_code() {
        let s = Status::parse(503, "<html>bad gateway</html>");
        assert_eq!(s.reason(), Reason::ServerError);
        assert!(s.message.contains("bad gateway"));
        assert!(s.is_transient());
        assert_eq!(Status::parse(403, "").reason(), Reason::Forbidden);
        assert_eq!(Status::parse(418, "").reason(), Reason::Other(String::new()));
    }

    #[test]
    fn retry_after_seconds_is_read_from_details() {
        let s = Status::parse(429, r#"{"kind":"Status","reason":"TooManyRequests","code":429,"details":{"retryAfterSeconds":3}}"#);
        assert_eq!(s.retry_after_seconds, Some(3));
        assert_eq!(s.reason(), Reason::TooManyRequests);
    }
}
