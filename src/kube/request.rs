//! Pure request building: method, path and query for each operation the agent uses.
//! Unit-tested apart from sending. Paths are built from validated names (DNS-1123), and
//! query values are percent-encoded here.

/// One API request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// Path and encoded query, starting with `/`.
    pub path_and_query: String,
    /// JSON body for `POST`.
    pub body: Option<String>,
    /// What this is, for errors and logs: `create Job ns/name`.
    pub operation: String,
}

/// `POST /apis/batch/v1/namespaces/{ns}/jobs`.
pub fn create_job(namespace: &str, name: &str, job_json: String) -> ApiRequest {
    ApiRequest {
        method: "POST",
        path_and_query: format!("/apis/batch/v1/namespaces/{namespace}/jobs"),
        body: Some(job_json),
        operation: format!("create Job {namespace}/{name}"),
    }
}

/// `GET /apis/batch/v1/namespaces/{ns}/jobs/{name}`.
pub fn get_job(namespace: &str, name: &str) -> ApiRequest {
    ApiRequest {
        method: "GET",
        path_and_query: format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}"),
        body: None,
        operation: format!("get Job {namespace}/{name}"),
    }
}

/// `GET /api/v1/namespaces/{ns}/pods?labelSelector=...`.
pub fn list_pods(namespace: &str, label_selector: &str) -> ApiRequest {
    ApiRequest {
        method: "GET",
        path_and_query: format!("/api/v1/namespaces/{namespace}/pods?labelSelector={}", encode(label_selector)),
        body: None,
        operation: format!("list Pods in {namespace} with {label_selector}"),
    }
}

/// `GET /api/v1/namespaces/{ns}/events?fieldSelector=...`.
pub fn list_events(namespace: &str, field_selector: &str) -> ApiRequest {
    ApiRequest {
        method: "GET",
        path_and_query: format!("/api/v1/namespaces/{namespace}/events?fieldSelector={}", encode(field_selector)),
        body: None,
        operation: format!("list Events in {namespace} with {field_selector}"),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` for one verb.
pub fn self_subject_access_review(namespace: &str, verb: &str, group: &str, resource: &str) -> ApiRequest {
    let body = format!(
        r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{{"resourceAttributes":{{"namespace":{},"verb":{},"group":{},"resource":{}}}}}}}"#,
        quote(namespace),
        quote(verb),
        quote(group),
        quote(resource)
    );
    ApiRequest {
        method: "POST",
        path_and_query: "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews".to_string(),
        body: Some(body),
        operation: format!("SelfSubjectAccessReview {verb} {resource} in {namespace}"),
    }
}

fn quote(s: &str) -> String {
    miniserde::json::to_string(&s.to_string())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_percent_encoded() {
        let r = list_pods("ns-1", "job-name=abc");
        assert_eq!(r.path_and_query, "/api/v1/namespaces/ns-1/pods?labelSelector=job-name%3Dabc");
        let r = list_events("ns-1", "involvedObject.name=abc,type=Warning");
        assert_eq!(r.path_and_query, "/api/v1/namespaces/ns-1/events?fieldSelector=involvedObject.name%3Dabc%2Ctype%3DWarning");
    }

    #[test]
    fn create_and_get_use_batch_v1_paths() {
        let r = create_job("ns", "j", "{}".into());
        assert_eq!((r.method, r.path_and_query.as_str()), ("POST", "/apis/batch/v1/namespaces/ns/jobs"));
        let r = get_job("ns", "j");
        assert_eq!((r.method, r.path_and_query.as_str()), ("GET", "/apis/batch/v1/namespaces/ns/jobs/j"));
    }

    #[test]
    fn access_review_body_is_valid_json() {
        let r = self_subject_access_review("ns", "create", "batch", "jobs");
        let v: miniserde::json::Value = miniserde::json::from_str(r.body.as_deref().unwrap()).unwrap();
        let text = miniserde::json::to_string(&v);
        assert!(text.contains(r#""verb":"create""#), "{text}");
    }
}
