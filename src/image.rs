//! Image references as the container runtime reads them, for the agent's image mirrors
//! and offline-install's registry client alike: the first path segment is a registry
//! when it looks like a host (a `.`, a `:` port, an `[` IPv6 literal, or `localhost`);
//! otherwise the image is on Docker Hub (`alpine` → `docker.io/library/alpine`,
//! `bitnami/kubectl` → `docker.io/bitnami/kubectl`).

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";

/// `reference` (tag and digest, if any, stay in the path) split into its registry and
/// the rest, Docker Hub short names expanded.
pub fn registry_and_path(reference: &str) -> (String, String) {
    match reference.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':', '[']) || first == "localhost" => (first.to_string(), rest.to_string()),
        Some(_) => (DOCKER_HUB.to_string(), reference.to_string()),
        None => (DOCKER_HUB.to_string(), format!("library/{reference}")),
    }
}

/// The host a registry's API is served on (Docker Hub's differs from its name).
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names_expand_and_hosts_stay() {
        let split = |r: &str| registry_and_path(r);
        assert_eq!(split("alpine:3"), ("docker.io".into(), "library/alpine:3".into()));
        assert_eq!(split("bitnami/kubectl"), ("docker.io".into(), "bitnami/kubectl".into()));
        assert_eq!(split("ghcr.io/humanitec/runner@sha256:ab"), ("ghcr.io".into(), "humanitec/runner@sha256:ab".into()));
        assert_eq!(split("localhost/x"), ("localhost".into(), "x".into()));
        assert_eq!(split("registry:5000/x"), ("registry:5000".into(), "x".into()));
        assert_eq!(split("[::1]/x"), ("[::1]".into(), "x".into()));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
