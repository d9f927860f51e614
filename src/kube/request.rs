//! Pure request building: method, path and query for each operation the agent uses.
//! Unit-tested apart from sending. Every path segment and selector value is a [`Name`],
//! which can only hold a valid DNS-1123 name, so no caller can steer a path (`..`, `/`)
//! or a query (`?`, `&`); query values are percent-encoded here as well.

use crate::json::quote;
use crate::name::Name;

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

/// Most Pods listed for one Job: a Job with `backoffLimit: 0` has one; the reply stays well
/// inside the parser's bounds (a Pod is a few hundred values) whatever the Job did.
pub const POD_LIST_LIMIT: u32 = 20;
/// Most Events listed for one object.
pub const EVENT_LIST_LIMIT: u32 = 100;

/// `POST /apis/batch/v1/namespaces/{ns}/jobs`.
pub fn create_job(namespace: &Name, name: &Name, job_json: String) -> ApiRequest {
    ApiRequest {
        method: "POST",
        path_and_query: format!("/apis/batch/v1/namespaces/{namespace}/jobs"),
        body: Some(job_json),
        operation: format!("create Job {namespace}/{name}"),
    }
}

/// `GET /apis/batch/v1/namespaces/{ns}/jobs/{name}`.
pub fn get_job(namespace: &Name, name: &Name) -> ApiRequest {
    ApiRequest {
        method: "GET",
        path_and_query: format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}"),
        body: None,
        operation: format!("get Job {namespace}/{name}"),
    }
}

/// The label the job controller gives a Job's pods (its name), by which a status check lists
/// them; the renderer sets it on every pod template to the Job's own name, so no JobSpec can
/// give its pods another deployment's.
pub const LABEL_JOB_NAME: &str = "job-name";

/// `GET /api/v1/namespaces/{ns}/pods?labelSelector=job-name%3D{job}&limit=...`: the Pods of one Job.
pub fn list_job_pods(namespace: &Name, job: &Name) -> ApiRequest {
    let selector = format!("{LABEL_JOB_NAME}={job}");
    ApiRequest {
        method: "GET",
        path_and_query: format!("/api/v1/namespaces/{namespace}/pods?labelSelector={}&limit={POD_LIST_LIMIT}", crate::http::percent_encode(&selector)),
        body: None,
        operation: format!("list Pods in {namespace} with {selector}"),
    }
}

/// `GET /api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3D{name}&limit=...`.
pub fn list_events_about(namespace: &Name, involved: &Name) -> ApiRequest {
    let selector = format!("involvedObject.name={involved}");
    ApiRequest {
        method: "GET",
        path_and_query: format!("/api/v1/namespaces/{namespace}/events?fieldSelector={}&limit={EVENT_LIST_LIMIT}", crate::http::percent_encode(&selector)),
        body: None,
        operation: format!("list Events in {namespace} with {selector}"),
    }
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` for one verb.
pub fn self_subject_access_review(namespace: &Name, verb: &str, group: &str, resource: &str) -> ApiRequest {
    let body = format!(
        r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{{"resourceAttributes":{{"namespace":{},"verb":{},"group":{},"resource":{}}}}}}}"#,
        quote(namespace.as_str()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::subdomain(s).unwrap()
    }

    #[test]
    fn selectors_are_percent_encoded_and_lists_are_limited() {
        let r = list_job_pods(&n("ns-1"), &n("abc"));
        assert_eq!(r.path_and_query, "/api/v1/namespaces/ns-1/pods?labelSelector=job-name%3Dabc&limit=20");
        let r = list_events_about(&n("ns-1"), &n("abc-x1.y"));
        assert_eq!(r.path_and_query, "/api/v1/namespaces/ns-1/events?fieldSelector=involvedObject.name%3Dabc-x1.y&limit=100");
    }

    #[test]
    fn create_and_get_use_batch_v1_paths() {
        let r = create_job(&n("ns"), &n("j"), "{}".into());
        assert_eq!((r.method, r.path_and_query.as_str()), ("POST", "/apis/batch/v1/namespaces/ns/jobs"));
        let r = get_job(&n("ns"), &n("j"));
        assert_eq!((r.method, r.path_and_query.as_str()), ("GET", "/apis/batch/v1/namespaces/ns/jobs/j"));
    }

    #[test]
    fn access_review_body_is_valid_json() {
        let r = self_subject_access_review(&n("ns"), "create", "batch", "jobs");
        let v: miniserde::json::Value = miniserde::json::from_str(r.body.as_deref().unwrap()).unwrap();
        let text = miniserde::json::to_string(&v);
        assert!(text.contains(r#""verb":"create""#), "{text}");
    }
}
