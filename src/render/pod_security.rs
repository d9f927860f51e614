//! The Kubernetes Pod Security Standards, enforced by the agent on the final pod of every
//! Job before it is sent, as Pod Security Admission would (but also on clusters that run
//! it off, old, or with the runner's namespace exempted). One pure function,
//! [`check`], from the pod spec and the pod template's annotations, the [`Level`] and
//! the operator's [`Exemptions`] to the first [`Refusal`].
//!
//! Follows the standard as published for Kubernetes v1.35
//! (<https://kubernetes.io/docs/concepts/security/pod-security-standards/>), check by
//! check; the check names are ours (kebab-case, listed in [`Check::ALL`]). Stricter than
//! the standard on purpose, because the agent cannot know the cluster's version:
//! - the relaxation for pods in a user namespace (`hostUsers: false`) is not applied: an
//!   API server without user-namespace support drops that field and runs the pod as root;
//! - the restricted level's exceptions for `spec.os.name: windows` are not applied;
//! - the deprecated seccomp annotations are checked like the fields: the standard stopped
//!   looking at them for v1.19 and later, yet API servers up to v1.26 copy an annotation
//!   into the unset field it stands for, so `unconfined` there runs the container unconfined;
//! - a restricted field holding a value of the wrong JSON type is refused (the API
//!   server would reject it anyway), and so is a key that differs from a restricted
//!   field's name only in case: a precaution for readers built on Go's encoding/json,
//!   which matches keys regardless of case (v1.20's API server matches them exactly and
//!   takes the last of a repeated key: `real_cluster::the_real_api_server_matches_keys_*`).
//!
//! Not here: Kubernetes' own validation of the pod (the API server answers `Invalid`),
//! and the optional "known list" of host ports (any host port other than 0 is refused).

use std::fmt;

use miniserde::json::{Number, Object, Value};

/// The three levels of the standard, from open to strict; each includes the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    /// No checks at all.
    Privileged,
    /// Prevents known privilege escalations (the default).
    #[default]
    Baseline,
    /// Pod hardening best practice; the Orchestrator's default JobSpec passes it.
    Restricted,
}

impl Level {
    /// Parses `privileged`, `baseline` or `restricted`.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    /// The level's name, as `JOB_POD_SECURITY` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One control of the standard; its [`Check::name`] is what `JOB_ALLOW` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Baseline: `windowsOptions.hostProcess` (pod and containers) not true.
    WindowsHostProcess,
    /// Baseline: `hostNetwork`, `hostPID`, `hostIPC` not true.
    HostNamespaces,
    /// Baseline: no container `privileged`.
    Privileged,
    /// Baseline: `capabilities.add` only from the default set.
    Capabilities,
    /// Baseline: no `hostPath` volume.
    HostPath,
    /// Baseline: no `ports[].hostPort` other than 0.
    HostPorts,
    /// Baseline (v1.34+): no `host` in probes and lifecycle hooks.
    HostProbes,
    /// Baseline: AppArmor not `Unconfined` (field) nor other than `runtime/default` or
    /// `localhost/*` (annotations).
    Apparmor,
    /// Baseline: SELinux type from the container types, no user or role.
    Selinux,
    /// Baseline: `procMount` unset or `Default`.
    ProcMount,
    /// Baseline: seccomp not `Unconfined`, at pod or container level, in the field or the
    /// deprecated annotations.
    Seccomp,
    /// Baseline: only the safe sysctls.
    Sysctls,
    /// Restricted: volumes only of the allowed types.
    VolumeTypes,
    /// Restricted: `allowPrivilegeEscalation: false` on every container.
    PrivilegeEscalation,
    /// Restricted: `runAsNonRoot: true`, per container or inherited from the pod.
    RunningAsNonRoot,
    /// Restricted: `runAsUser` not 0, at pod or container level.
    RunningAsNonRootUser,
    /// Restricted: seccomp `RuntimeDefault` or `Localhost`, per container or inherited, and
    /// no deprecated annotation naming another profile.
    SeccompRestricted,
    /// Restricted: capabilities drop `ALL` and add nothing but `NET_BIND_SERVICE`.
    CapabilitiesRestricted,
}

impl Check {
    /// Every check, in the order they are applied and documented.
    pub const ALL: [Check; 18] = [
        Check::WindowsHostProcess,
        Check::HostNamespaces,
        Check::Privileged,
        Check::Capabilities,
        Check::HostPath,
        Check::HostPorts,
        Check::HostProbes,
        Check::Apparmor,
        Check::Selinux,
        Check::ProcMount,
        Check::Seccomp,
        Check::Sysctls,
        Check::VolumeTypes,
        Check::PrivilegeEscalation,
        Check::RunningAsNonRoot,
        Check::RunningAsNonRootUser,
        Check::SeccompRestricted,
        Check::CapabilitiesRestricted,
    ];

    /// The name in refusals and in `JOB_ALLOW`.
    pub fn name(self) -> &'static str {
        match self {
            Check::WindowsHostProcess => "windows-host-process",
            Check::HostNamespaces => "host-namespaces",
            Check::Privileged => "privileged",
            Check::Capabilities => "capabilities",
            Check::HostPath => "host-path",
            Check::HostPorts => "host-ports",
            Check::HostProbes => "host-probes",
            Check::Apparmor => "apparmor",
            Check::Selinux => "selinux",
            Check::ProcMount => "proc-mount",
            Check::Seccomp => "seccomp",
            Check::Sysctls => "sysctls",
            Check::VolumeTypes => "volume-types",
            Check::PrivilegeEscalation => "privilege-escalation",
            Check::RunningAsNonRoot => "running-as-non-root",
            Check::RunningAsNonRootUser => "running-as-non-root-user",
            Check::SeccompRestricted => "seccomp-restricted",
            Check::CapabilitiesRestricted => "capabilities-restricted",
        }
    }

    /// The lowest level that applies this check.
    pub fn level(self) -> Level {
        match self {
            Check::VolumeTypes
            | Check::PrivilegeEscalation
            | Check::RunningAsNonRoot
            | Check::RunningAsNonRootUser
            | Check::SeccompRestricted
            | Check::CapabilitiesRestricted => Level::Restricted,
            _ => Level::Baseline,
        }
    }

    /// The check named `name`, as `JOB_ALLOW` takes it.
    pub fn parse(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The checks the operator exempts (`JOB_ALLOW`); none by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exemptions(u32);

impl Exemptions {
    /// These exemptions and `check`.
    pub fn with(self, check: Check) -> Exemptions {
        Exemptions(self.0 | check.bit())
    }

    /// True when `check` is exempted.
    pub fn contains(self, check: Check) -> bool {
        self.0 & check.bit() != 0
    }
}

/// Why a pod fails its level: the check and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The level in force.
    pub level: Level,
    /// The check that failed.
    pub check: Check,
    /// Which container and field, e.g. `container 'main' adds SYS_ADMIN`.
    pub detail: String,
}

/// Capabilities the baseline level lets a container add (the container runtimes' default set).
pub const BASELINE_CAPABILITIES: [&str; 13] =
    ["AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"];
/// The sysctls the baseline level allows (namespaced, isolated from other pods).
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];
/// The SELinux types the baseline level allows (besides none).
pub const SELINUX_TYPES: [&str; 4] = ["container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
/// The volume types the restricted level allows (`hostPath` is [`Check::HostPath`]'s).
pub const RESTRICTED_VOLUME_TYPES: [&str; 8] = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
/// The pod-template annotation prefix of the deprecated AppArmor profiles, one per container.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";
/// The pod-template annotation of the deprecated pod-wide seccomp profile. API servers
/// from v1.19 to v1.26 copy it into `securityContext.seccompProfile` when that is unset.
pub const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
/// The pod-template annotation prefix of the deprecated per-container seccomp profiles,
/// copied into the container's `securityContext.seccompProfile` the same way.
pub const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

/// The pod's container lists and how a refusal names their members.
pub const CONTAINER_LISTS: [(&str, &str); 3] =
    [("containers", "container"), ("initContainers", "init container"), ("ephemeralContainers", "ephemeral container")];

/// Checks `pod` (a pod spec; `None` when the Job has none) and its template's
/// `annotations` against `level`, skipping `exempt` checks. The first failing check, in
/// [`Check::ALL`] order, is the refusal.
pub fn check(pod: Option<&Value>, annotations: Option<&Value>, level: Level, exempt: Exemptions) -> Result<(), Refusal> {
    if level == Level::Privileged {
        return Ok(());
    }
    let empty = Value::Object(Object::new());
    let pod = Pod { spec: pod.unwrap_or(&empty), annotations };
    for c in Check::ALL {
        if c.level() > level || exempt.contains(c) {
            continue;
        }
        if let Some(detail) = pod.violation(c) {
            return Err(Refusal { level, check: c, detail });
        }
    }
    Ok(())
}

/// A field as the checks see it: absent (or null), present, or spelled in another case
/// than the field, which an old API server would still read as the field.
enum Field<'a> {
    Absent,
    Present(&'a Value),
    Miscased(String),
}

/// `key` of `v`, with a twin key differing only in case reported as [`Field::Miscased`].
fn field<'a>(v: Option<&'a Value>, key: &str) -> Field<'a> {
    let Some(Value::Object(o)) = v else { return Field::Absent };
    if let Some(twin) = o.keys().find(|k| k.as_str() != key && k.eq_ignore_ascii_case(key)) {
        return Field::Miscased(shown(twin));
    }
    match o.get(key) {
        None | Some(Value::Null) => Field::Absent,
        Some(v) => Field::Present(v),
    }
}

/// Walks `path` through objects; any miscased step is reported.
fn at<'a>(v: Option<&'a Value>, path: &[&str]) -> Field<'a> {
    let mut cur = v;
    for (i, key) in path.iter().enumerate() {
        match field(cur, key) {
            Field::Present(next) if i + 1 < path.len() => cur = Some(next),
            other => return other,
        }
    }
    Field::Absent
}

/// The values of every key of `v` that is `key` in any case: what an API server that
/// reads keys case-insensitively could take for `key`.
fn every_case<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    let o = match v {
        Value::Object(o) => Some(o),
        _ => None,
    };
    let key = key.to_string();
    o.into_iter().flat_map(|o| o.iter()).filter(move |(k, _)| k.eq_ignore_ascii_case(&key)).map(|(_, v)| v)
}

struct Pod<'a> {
    spec: &'a Value,
    annotations: Option<&'a Value>,
}

/// One container of any list, with how refusals name it.
struct Container<'a> {
    kind: &'static str,
    value: &'a Value,
}

impl Container<'_> {
    fn who(&self) -> String {
        let name = match self.value {
            Value::Object(o) => match o.get("name") {
                Some(Value::String(s)) => shown(s),
                _ => "(unnamed)".into(),
            },
            _ => "(unnamed)".into(),
        };
        format!("{} '{name}'", self.kind)
    }

    fn security(&self, path: &[&str]) -> Field<'_> {
        let mut full = vec!["securityContext"];
        full.extend_from_slice(path);
        at(Some(self.value), &full)
    }
}

impl<'a> Pod<'a> {
    fn containers(&self) -> Vec<Container<'a>> {
        let mut out = Vec::new();
        for (list, kind) in CONTAINER_LISTS {
            for items in every_case(self.spec, list) {
                match items {
                    Value::Array(items) => out.extend(items.iter().map(|value| Container { kind, value })),
                    Value::Null => {}
                    // Not a list: seen as one unnamed container, so that whatever of it the
                    // API server might read is still checked.
                    other => out.push(Container { kind, value: other }),
                }
            }
        }
        out
    }

    fn pod_security(&self, path: &[&str]) -> Field<'a> {
        let mut full = vec!["securityContext"];
        full.extend_from_slice(path);
        at(Some(self.spec), &full)
    }

    /// What in the pod breaks `check`, if anything.
    fn violation(&self, check: Check) -> Option<String> {
        match check {
            Check::WindowsHostProcess => self.each_context(&["windowsOptions", "hostProcess"], is_false, "sets securityContext.windowsOptions.hostProcess"),
            Check::HostNamespaces => ["hostNetwork", "hostPID", "hostIPC"].into_iter().find_map(|f| match field(Some(self.spec), f) {
                Field::Absent => None,
                Field::Present(v) if is_false(v) => None,
                Field::Present(v) => Some(format!("the pod sets {f}: {}", shown_value(v))),
                Field::Miscased(k) => Some(format!("the pod sets '{k}', which old API servers read as {f}")),
            }),
            Check::Privileged => self.each_container(&["privileged"], is_false, "sets securityContext.privileged"),
            Check::Capabilities => self.added_capabilities(|c| BASELINE_CAPABILITIES.contains(&c)),
            Check::HostPath => self.volumes().into_iter().find_map(|(name, v)| match field(Some(v), "hostPath") {
                Field::Absent => None,
                Field::Present(_) => Some(format!("volume '{name}' is a hostPath")),
                Field::Miscased(k) => Some(format!("volume '{name}' sets '{k}', which old API servers read as hostPath")),
            }),
            Check::HostPorts => self.containers().into_iter().find_map(|c| {
                let ports = match field(Some(c.value), "ports") {
                    Field::Absent => return None,
                    Field::Miscased(k) => return Some(format!("{} sets '{k}', which old API servers read as ports", c.who())),
                    Field::Present(Value::Array(p)) => p,
                    Field::Present(_) => return Some(format!("{} has ports that are not a list", c.who())),
                };
                ports.iter().find_map(|p| match field(Some(p), "hostPort") {
                    Field::Absent => None,
                    Field::Present(Value::Number(n)) if is_zero(n) => None,
                    Field::Present(v) => Some(format!("{} uses hostPort {}", c.who(), shown_value(v))),
                    Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as hostPort", c.who())),
                })
            }),
            Check::HostProbes => self.containers().into_iter().find_map(|c| {
                let handlers = [
                    &["livenessProbe", "httpGet", "host"][..],
                    &["livenessProbe", "tcpSocket", "host"],
                    &["readinessProbe", "httpGet", "host"],
                    &["readinessProbe", "tcpSocket", "host"],
                    &["startupProbe", "httpGet", "host"],
                    &["startupProbe", "tcpSocket", "host"],
                    &["lifecycle", "postStart", "httpGet", "host"],
                    &["lifecycle", "postStart", "tcpSocket", "host"],
                    &["lifecycle", "preStop", "httpGet", "host"],
                    &["lifecycle", "preStop", "tcpSocket", "host"],
                ];
                handlers.into_iter().find_map(|path| match at(Some(c.value), path) {
                    Field::Absent => None,
                    Field::Present(Value::String(s)) if s.is_empty() => None,
                    Field::Present(v) => Some(format!("{} sets {} to {}", c.who(), path.join("."), shown_value(v))),
                    Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as {}", c.who(), path.join("."))),
                })
            }),
            Check::Apparmor => self
                .each_context(&["appArmorProfile", "type"], |v| is_one_of(v, &["RuntimeDefault", "Localhost"]), "sets securityContext.appArmorProfile.type")
                .or_else(|| self.apparmor_annotations()),
            Check::Selinux => self
                .each_context(&["seLinuxOptions", "type"], |v| is_empty_string(v) || is_one_of(v, &SELINUX_TYPES), "sets securityContext.seLinuxOptions.type")
                .or_else(|| self.each_context(&["seLinuxOptions", "user"], is_empty_string, "sets securityContext.seLinuxOptions.user"))
                .or_else(|| self.each_context(&["seLinuxOptions", "role"], is_empty_string, "sets securityContext.seLinuxOptions.role")),
            Check::ProcMount => self.each_container(&["procMount"], |v| is_one_of(v, &["Default"]), "sets securityContext.procMount"),
            Check::Seccomp => self
                .each_context(&["seccompProfile", "type"], |v| is_one_of(v, &["RuntimeDefault", "Localhost"]), "sets securityContext.seccompProfile.type")
                .or_else(|| self.seccomp_annotations()),
            Check::Sysctls => match self.pod_security(&["sysctls"]) {
                Field::Absent => None,
                Field::Miscased(k) => Some(format!("the pod sets '{k}', which old API servers read as securityContext.sysctls")),
                Field::Present(Value::Array(list)) => list.iter().find_map(|s| match field(Some(s), "name") {
                    Field::Present(Value::String(n)) if SAFE_SYSCTLS.contains(&n.as_str()) => None,
                    Field::Present(v) => Some(format!("the pod sets sysctl {}, which is not in the safe set", shown_value(v))),
                    Field::Absent => Some("the pod sets a sysctl without a name".into()),
                    Field::Miscased(k) => Some(format!("a sysctl sets '{k}', which old API servers read as its name")),
                }),
                Field::Present(_) => Some("the pod's securityContext.sysctls is not a list".into()),
            },
            Check::VolumeTypes => self.volumes().into_iter().find_map(|(name, v)| {
                let Value::Object(o) = v else { return Some(format!("volume '{name}' is not an object")) };
                o.iter().filter(|(k, v)| k.as_str() != "name" && k.as_str() != "hostPath" && !matches!(v, Value::Null)).find_map(|(k, _)| {
                    (!RESTRICTED_VOLUME_TYPES.contains(&k.as_str()))
                        .then(|| format!("volume '{name}' is of type {}, not one of {}", shown(k), RESTRICTED_VOLUME_TYPES.join(", ")))
                })
            }),
            Check::PrivilegeEscalation => self.containers().into_iter().find_map(|c| match c.security(&["allowPrivilegeEscalation"]) {
                Field::Present(Value::Bool(false)) => None,
                Field::Present(v) => Some(format!("{} sets securityContext.allowPrivilegeEscalation to {} (it must be false)", c.who(), shown_value(v))),
                Field::Absent => Some(format!("{} does not set securityContext.allowPrivilegeEscalation: false", c.who())),
                Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as a restricted field", c.who())),
            }),
            Check::RunningAsNonRoot => self.inherited(&["runAsNonRoot"], |v| matches!(v, Value::Bool(true)), "securityContext.runAsNonRoot: true"),
            Check::RunningAsNonRootUser => {
                self.each_context(&["runAsUser"], |v| !matches!(v, Value::Number(n) if is_zero(n)), "sets securityContext.runAsUser")
            }
            Check::SeccompRestricted => self
                .inherited(
                    &["seccompProfile", "type"],
                    |v| is_one_of(v, &["RuntimeDefault", "Localhost"]),
                    "securityContext.seccompProfile.type RuntimeDefault or Localhost",
                )
                .or_else(|| self.seccomp_annotations()),
            Check::CapabilitiesRestricted => self
                .containers()
                .into_iter()
                .find_map(|c| match c.security(&["capabilities", "drop"]) {
                    Field::Present(Value::Array(d)) if d.iter().any(|x| matches!(x, Value::String(s) if s == "ALL")) => None,
                    Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as a restricted field", c.who())),
                    _ => Some(format!("{} does not drop ALL capabilities (securityContext.capabilities.drop: [\"ALL\"])", c.who())),
                })
                .or_else(|| self.added_capabilities(|c| c == "NET_BIND_SERVICE")),
        }
    }

    /// The first pod-level or container-level `securityContext.<path>` whose value is not `ok`.
    fn each_context(&self, path: &[&str], ok: impl Fn(&Value) -> bool, what: &str) -> Option<String> {
        let judge = |who: String, f: Field| match f {
            Field::Absent => None,
            Field::Present(v) if ok(v) => None,
            Field::Present(v) => Some(format!("{who} {what} to {}", shown_value(v))),
            Field::Miscased(k) => Some(format!("{who} sets '{k}', which old API servers read as securityContext.{}", path.join("."))),
        };
        judge("the pod".into(), self.pod_security(path)).or_else(|| self.containers().into_iter().find_map(|c| judge(c.who(), c.security(path))))
    }

    /// Like [`Pod::each_context`], for the container level only.
    fn each_container(&self, path: &[&str], ok: impl Fn(&Value) -> bool, what: &str) -> Option<String> {
        self.containers().into_iter().find_map(|c| match c.security(path) {
            Field::Absent => None,
            Field::Present(v) if ok(v) => None,
            Field::Present(v) => Some(format!("{} {what} to {}", c.who(), shown_value(v))),
            Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as securityContext.{}", c.who(), path.join("."))),
        })
    }

    /// A field every container must have `ok`, set on the container or, when the
    /// container leaves it unset, inherited from the pod. A pod-level value that is set
    /// and not `ok` is refused even when every container overrides it (as the standard does).
    fn inherited(&self, path: &[&str], ok: impl Fn(&Value) -> bool, needed: &str) -> Option<String> {
        let pod_ok = match self.pod_security(path) {
            Field::Absent => false,
            Field::Present(v) if ok(v) => true,
            Field::Present(v) => return Some(format!("the pod sets securityContext.{} to {} (it must set {needed})", path.join("."), shown_value(v))),
            Field::Miscased(k) => return Some(format!("the pod sets '{k}', which old API servers read as securityContext.{}", path.join("."))),
        };
        self.containers().into_iter().find_map(|c| match c.security(path) {
            Field::Absent if pod_ok => None,
            Field::Absent => Some(format!("neither the pod nor {} sets {needed}", c.who())),
            Field::Present(v) if ok(v) => None,
            Field::Present(v) => Some(format!("{} sets securityContext.{} to {} (it must set {needed})", c.who(), path.join("."), shown_value(v))),
            Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as securityContext.{}", c.who(), path.join("."))),
        })
    }

    /// The first capability a container adds that `allowed` refuses.
    fn added_capabilities(&self, allowed: impl Fn(&str) -> bool) -> Option<String> {
        self.containers().into_iter().find_map(|c| match c.security(&["capabilities", "add"]) {
            Field::Absent => None,
            Field::Present(Value::Array(add)) => add.iter().find_map(|cap| match cap {
                Value::String(s) if allowed(s) => None,
                other => Some(format!("{} adds {}", c.who(), shown_value(other).trim_matches('\''))),
            }),
            Field::Present(_) => Some(format!("{} has securityContext.capabilities.add that is not a list", c.who())),
            Field::Miscased(k) => Some(format!("{} sets '{k}', which old API servers read as securityContext.capabilities.add", c.who())),
        })
    }

    fn apparmor_annotations(&self) -> Option<String> {
        let Some(Value::Object(annotations)) = self.annotations else { return None };
        annotations.iter().find_map(|(k, v)| {
            if !k.to_ascii_lowercase().starts_with(APPARMOR_ANNOTATION_PREFIX) {
                return None;
            }
            match v {
                Value::String(s) if s.is_empty() || s == "runtime/default" || s.starts_with("localhost/") => None,
                other => Some(format!("the pod template's annotation {} is {}", shown(k), shown_value(other))),
            }
        })
    }

    /// The first deprecated seccomp annotation naming a profile other than the runtime's
    /// default or a localhost one. The fields alone are not enough: an API server of
    /// v1.19 to v1.26 copies `container.seccomp.security.alpha.kubernetes.io/main:
    /// unconfined` into the container's unset `seccompProfile`, so a pod whose fields say
    /// `RuntimeDefault` at pod level runs `main` unconfined (seen on a real v1.20). Shared
    /// by [`Check::Seccomp`] and [`Check::SeccompRestricted`], so exempting one leaves it
    /// in force through the other.
    fn seccomp_annotations(&self) -> Option<String> {
        let Some(Value::Object(annotations)) = self.annotations else { return None };
        annotations.iter().find_map(|(k, v)| {
            let key = k.to_ascii_lowercase();
            if key != SECCOMP_POD_ANNOTATION && !key.starts_with(SECCOMP_CONTAINER_ANNOTATION_PREFIX) {
                return None;
            }
            match v {
                Value::String(s) if s == "runtime/default" || s == "docker/default" || s.starts_with("localhost/") => None,
                other => Some(format!("the pod template's annotation {} is {}", shown(k), shown_value(other))),
            }
        })
    }

    /// Each volume with its name.
    fn volumes(&self) -> Vec<(String, &'a Value)> {
        let mut out = Vec::new();
        for list in every_case(self.spec, "volumes") {
            match list {
                Value::Array(v) => out.extend(v.iter().map(|vol| {
                    let name = match vol {
                        Value::Object(o) => match o.get("name") {
                            Some(Value::String(s)) => shown(s),
                            _ => "(unnamed)".into(),
                        },
                        _ => "(unnamed)".into(),
                    };
                    (name, vol)
                })),
                Value::Null => {}
                other => out.push(("(not a list)".into(), other)),
            }
        }
        out
    }
}

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false))
}

fn is_empty_string(v: &Value) -> bool {
    matches!(v, Value::String(s) if s.is_empty())
}

fn is_one_of(v: &Value, allowed: &[&str]) -> bool {
    matches!(v, Value::String(s) if allowed.contains(&s.as_str()))
}

fn is_zero(n: &Number) -> bool {
    match n {
        Number::U64(u) => *u == 0,
        Number::I64(i) => *i == 0,
        Number::F64(f) => *f == 0.0,
    }
}

/// A peer's text as a refusal shows it (see [`crate::text::snippet`]).
fn shown(s: &str) -> String {
    crate::text::snippet(s, 63)
}

/// A value as a refusal shows it: scalars as written, strings quoted, the rest by kind.
fn shown_value(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", shown(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniserde::json;

    fn run(pod: &str, annotations: Option<&str>, level: Level, exempt: Exemptions) -> Result<(), Refusal> {
        let pod: Value = json::from_str(pod).unwrap();
        let annotations: Option<Value> = annotations.map(|a| json::from_str(a).unwrap());
        check(Some(&pod), annotations.as_ref(), level, exempt)
    }

    /// The container fields that make a container pass `restricted`.
    const HARDENED: &str = r#""allowPrivilegeEscalation":false,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"},"capabilities":{"drop":["ALL"]}"#;

    /// A restricted-passing pod with one container `main` whose securityContext gets
    /// `extra` and whose pod spec gets `pod_extra`.
    fn pod(container_extra: &str, pod_extra: &str) -> String {
        let sep = if container_extra.is_empty() { "" } else { "," };
        let pod_sep = if pod_extra.is_empty() { "" } else { "," };
        format!(r#"{{"containers":[{{"name":"main","image":"x","securityContext":{{{HARDENED}{sep}{container_extra}}}}}]{pod_sep}{pod_extra}}}"#)
    }

    /// Asserts that `spec` fails exactly `check` at `level` (and every level above), with
    /// `needle` in the detail, passes once that check is exempted, and passes a level below.
    fn refused_by(spec: &str, annotations: Option<&str>, check: Check, needle: &str) {
        let levels: &[Level] = if check.level() == Level::Baseline { &[Level::Baseline, Level::Restricted] } else { &[Level::Restricted] };
        for &level in levels {
            let e = run(spec, annotations, level, Exemptions::default()).expect_err(spec);
            assert_eq!((e.check, e.level), (check, level), "{spec}: {e:?}");
            assert!(e.detail.contains(needle), "{spec}: {}", e.detail);
            // At restricted, a baseline check's stricter twin must be exempted as well.
            let exempt = match (level, check) {
                (Level::Restricted, Check::Seccomp) => Exemptions::default().with(check).with(Check::SeccompRestricted),
                (Level::Restricted, Check::Capabilities) => Exemptions::default().with(check).with(Check::CapabilitiesRestricted),
                _ => Exemptions::default().with(check),
            };
            assert_eq!(run(spec, annotations, level, exempt), Ok(()), "{spec} with {} exempted", check.name());
        }
        assert_eq!(run(spec, annotations, Level::Privileged, Exemptions::default()), Ok(()));
        if check.level() == Level::Restricted {
            assert_eq!(run(spec, annotations, Level::Baseline, Exemptions::default()), Ok(()), "{spec} passes baseline");
        }
    }

    fn passes(spec: &str, annotations: Option<&str>) {
        assert_eq!(run(spec, annotations, Level::Restricted, Exemptions::default()), Ok(()), "{spec}");
        assert_eq!(run(spec, annotations, Level::Baseline, Exemptions::default()), Ok(()), "{spec}");
    }

    #[test]
    fn a_hardened_pod_passes_every_level() {
        passes(&pod("", ""), None);
    }

    #[test]
    fn every_check_has_a_unique_name_that_parses_back() {
        for c in Check::ALL {
            assert_eq!(Check::parse(c.name()), Some(c));
        }
        assert_eq!(Check::parse("root"), None);
    }

    #[test]
    fn windows_host_process_is_refused_at_pod_and_container_level() {
        passes(&pod(r#""windowsOptions":{"hostProcess":false}"#, r#""securityContext":{"windowsOptions":{"hostProcess":false}}"#), None);
        refused_by(
            &pod(r#""windowsOptions":{"hostProcess":true}"#, ""),
            None,
            Check::WindowsHostProcess,
            "container 'main' sets securityContext.windowsOptions.hostProcess",
        );
        refused_by(&pod("", r#""securityContext":{"windowsOptions":{"hostProcess":true}}"#), None, Check::WindowsHostProcess, "the pod sets");
    }

    #[test]
    fn host_namespaces_are_refused() {
        passes(&pod("", r#""hostNetwork":false,"hostPID":false,"hostIPC":null"#), None);
        for f in ["hostNetwork", "hostPID", "hostIPC"] {
            refused_by(&pod("", &format!(r#""{f}":true"#)), None, Check::HostNamespaces, &format!("the pod sets {f}: true"));
        }
    }

    #[test]
    fn privileged_is_refused_in_every_kind_of_container() {
        passes(&pod(r#""privileged":false"#, ""), None);
        refused_by(&pod(r#""privileged":true"#, ""), None, Check::Privileged, "container 'main' sets securityContext.privileged to true");
        let init = format!(r#"{{"containers":[],"initContainers":[{{"name":"i","securityContext":{{{HARDENED},"privileged":true}}}}]}}"#);
        refused_by(&init, None, Check::Privileged, "init container 'i'");
        let eph = format!(r#"{{"containers":[],"ephemeralContainers":[{{"name":"e","securityContext":{{{HARDENED},"privileged":true}}}}]}}"#);
        refused_by(&eph, None, Check::Privileged, "ephemeral container 'e'");
    }

    #[test]
    fn a_privileged_value_of_the_wrong_type_or_a_miscased_key_is_refused() {
        refused_by(&pod(r#""privileged":"true""#, ""), None, Check::Privileged, "to 'true'");
        refused_by(&pod(r#""Privileged":true"#, ""), None, Check::Privileged, "'Privileged'");
        refused_by(&pod("", r#""HostNetwork":true"#), None, Check::HostNamespaces, "'HostNetwork'");
    }

    #[test]
    fn baseline_allows_the_default_capabilities_only() {
        let ok = r#"{"containers":[{"name":"main","securityContext":{"capabilities":{"add":["CHOWN","NET_BIND_SERVICE","KILL"]}}}]}"#;
        assert_eq!(run(ok, None, Level::Baseline, Exemptions::default()), Ok(()));
        let bad = r#"{"containers":[{"name":"main","securityContext":{"capabilities":{"add":["CHOWN","SYS_ADMIN"]}}}]}"#;
        let e = run(bad, None, Level::Baseline, Exemptions::default()).unwrap_err();
        assert_eq!((e.check, e.detail.as_str()), (Check::Capabilities, "container 'main' adds SYS_ADMIN"));
        assert_eq!(run(bad, None, Level::Baseline, Exemptions::default().with(Check::Capabilities)), Ok(()));
    }

    #[test]
    fn restricted_needs_drop_all_and_adds_only_net_bind_service() {
        passes(&pod(r#""capabilities":{"drop":["ALL"],"add":["NET_BIND_SERVICE"]}"#, "").replace(r#""capabilities":{"drop":["ALL"]},"#, ""), None);
        let no_drop = format!(
            r#"{{"containers":[{{"name":"main","securityContext":{}}}]}}"#,
            r#"{"allowPrivilegeEscalation":false,"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"},"capabilities":{"drop":["NET_RAW"]}}"#
        );
        refused_by(&no_drop, None, Check::CapabilitiesRestricted, "does not drop ALL");
        let chown = pod("", "").replace(r#""drop":["ALL"]"#, r#""drop":["ALL"],"add":["CHOWN"]"#);
        refused_by(&chown, None, Check::CapabilitiesRestricted, "container 'main' adds CHOWN");
    }

    #[test]
    fn host_path_volumes_are_refused_and_only_by_host_path() {
        passes(&pod("", r#""volumes":[{"name":"t","emptyDir":{}}]"#), None);
        refused_by(&pod("", r#""volumes":[{"name":"root","hostPath":{"path":"/"}}]"#), None, Check::HostPath, "volume 'root' is a hostPath");
    }

    #[test]
    fn host_ports_other_than_zero_are_refused() {
        passes(&pod("", "").replace(r#""image":"x""#, r#""image":"x","ports":[{"containerPort":80,"hostPort":0},{"containerPort":81}]"#), None);
        refused_by(
            &pod("", "").replace(r#""image":"x""#, r#""image":"x","ports":[{"containerPort":80,"hostPort":8080}]"#),
            None,
            Check::HostPorts,
            "container 'main' uses hostPort 8080",
        );
    }

    #[test]
    fn a_host_in_a_probe_or_lifecycle_hook_is_refused() {
        passes(&pod("", "").replace(r#""image":"x""#, r#""image":"x","livenessProbe":{"httpGet":{"port":80,"host":""}}"#), None);
        refused_by(
            &pod("", "").replace(r#""image":"x""#, r#""image":"x","readinessProbe":{"tcpSocket":{"port":80,"host":"169.254.169.254"}}"#),
            None,
            Check::HostProbes,
            "readinessProbe.tcpSocket.host to '169.254.169.254'",
        );
        refused_by(
            &pod("", "").replace(r#""image":"x""#, r#""image":"x","lifecycle":{"preStop":{"httpGet":{"port":80,"host":"10.0.0.1"}}}"#),
            None,
            Check::HostProbes,
            "lifecycle.preStop.httpGet.host",
        );
    }

    #[test]
    fn apparmor_unconfined_is_refused_in_the_field_and_the_annotations() {
        passes(
            &pod(r#""appArmorProfile":{"type":"RuntimeDefault"}"#, r#""securityContext":{"appArmorProfile":{"type":"Localhost","localhostProfile":"p"}}"#),
            Some(r#"{"container.apparmor.security.beta.kubernetes.io/main":"localhost/p","other":"unconfined"}"#),
        );
        refused_by(
            &pod(r#""appArmorProfile":{"type":"Unconfined"}"#, ""),
            None,
            Check::Apparmor,
            "container 'main' sets securityContext.appArmorProfile.type to 'Unconfined'",
        );
        refused_by(&pod("", r#""securityContext":{"appArmorProfile":{"type":"Unconfined"}}"#), None, Check::Apparmor, "the pod sets");
        refused_by(
            &pod("", ""),
            Some(r#"{"container.apparmor.security.beta.kubernetes.io/main":"unconfined"}"#),
            Check::Apparmor,
            "annotation container.apparmor.security.beta.kubernetes.io/main is 'unconfined'",
        );
    }

    #[test]
    fn selinux_allows_the_container_types_and_no_user_or_role() {
        passes(&pod(r#""seLinuxOptions":{"type":"container_init_t","level":"s0:c1"}"#, r#""securityContext":{"seLinuxOptions":{"type":""}}"#), None);
        refused_by(
            &pod(r#""seLinuxOptions":{"type":"spc_t"}"#, ""),
            None,
            Check::Selinux,
            "container 'main' sets securityContext.seLinuxOptions.type to 'spc_t'",
        );
        refused_by(
            &pod("", r#""securityContext":{"seLinuxOptions":{"user":"system_u"}}"#),
            None,
            Check::Selinux,
            "the pod sets securityContext.seLinuxOptions.user",
        );
        refused_by(&pod(r#""seLinuxOptions":{"role":"sysadm_r"}"#, ""), None, Check::Selinux, "seLinuxOptions.role");
    }

    #[test]
    fn proc_mount_must_be_default() {
        passes(&pod(r#""procMount":"Default""#, ""), None);
        refused_by(&pod(r#""procMount":"Unmasked""#, ""), None, Check::ProcMount, "container 'main' sets securityContext.procMount to 'Unmasked'");
        // The standard relaxes it in a user namespace; the agent does not (see the module doc).
        refused_by(&pod(r#""procMount":"Unmasked""#, r#""hostUsers":false"#), None, Check::ProcMount, "Unmasked");
    }

    #[test]
    fn seccomp_unconfined_is_refused_at_baseline_on_pod_and_container() {
        let unconfined_container = pod("", "").replace("RuntimeDefault", "Unconfined");
        refused_by(&unconfined_container, None, Check::Seccomp, "container 'main' sets securityContext.seccompProfile.type to 'Unconfined'");
        refused_by(&pod("", r#""securityContext":{"seccompProfile":{"type":"Unconfined"}}"#), None, Check::Seccomp, "the pod sets");
    }

    #[test]
    fn a_seccomp_annotation_naming_unconfined_is_refused_though_every_field_says_runtime_default() {
        // The pod passes on its fields, but a v1.19–v1.26 API server copies each annotation
        // into the unset field it stands for, and the container would run unconfined.
        let container = Some(r#"{"container.seccomp.security.alpha.kubernetes.io/main":"unconfined"}"#);
        let unset = pod("", r#""securityContext":{"seccompProfile":{"type":"RuntimeDefault"}}"#).replace(r#""seccompProfile":{"type":"RuntimeDefault"},"#, "");
        refused_by(&unset, container, Check::Seccomp, "annotation container.seccomp.security.alpha.kubernetes.io/main is 'unconfined'");
        refused_by(&pod("", ""), Some(r#"{"seccomp.security.alpha.kubernetes.io/pod":"unconfined"}"#), Check::Seccomp, "security.alpha.kubernetes.io/pod");
        for odd in [r#""Unconfined""#, r#""""#, "7", r#""runtime/default ""#] {
            let annotations = format!(r#"{{"container.seccomp.security.alpha.kubernetes.io/main":{odd}}}"#);
            assert_eq!(run(&pod("", ""), Some(&annotations), Level::Baseline, Exemptions::default()).unwrap_err().check, Check::Seccomp, "{odd}");
        }
        // At restricted, exempting the baseline check leaves its restricted twin refusing it.
        let e = run(&unset, container, Level::Restricted, Exemptions::default().with(Check::Seccomp)).unwrap_err();
        assert_eq!(e.check, Check::SeccompRestricted, "{e:?}");
        passes(
            &pod("", ""),
            Some(
                r#"{"seccomp.security.alpha.kubernetes.io/pod":"runtime/default","container.seccomp.security.alpha.kubernetes.io/main":"localhost/p.json","container.seccomp.security.alpha.kubernetes.io/s":"docker/default"}"#,
            ),
        );
    }

    #[test]
    fn restricted_seccomp_is_inherited_from_the_pod_and_overridden_per_container() {
        let unset = pod("", "").replace(r#""seccompProfile":{"type":"RuntimeDefault"},"#, "");
        refused_by(&unset, None, Check::SeccompRestricted, "neither the pod nor container 'main' sets");
        passes(
            &format!(r#"{},"securityContext":{{"seccompProfile":{{"type":"Localhost","localhostProfile":"p.json"}}}}}}"#, unset.trim_end_matches('}')),
            None,
        );
    }

    #[test]
    fn only_safe_sysctls_are_allowed() {
        passes(
            &pod("", r#""securityContext":{"sysctls":[{"name":"net.ipv4.tcp_keepalive_time","value":"60"},{"name":"kernel.shm_rmid_forced","value":"1"}]}"#),
            None,
        );
        refused_by(&pod("", r#""securityContext":{"sysctls":[{"name":"kernel.msgmax","value":"1"}]}"#), None, Check::Sysctls, "sysctl 'kernel.msgmax'");
    }

    #[test]
    fn restricted_allows_only_the_listed_volume_types() {
        passes(
            &pod(
                "",
                r#""volumes":[{"name":"a","emptyDir":{}},{"name":"b","secret":{"secretName":"s"}},{"name":"c","projected":{"sources":[]}},{"name":"d","persistentVolumeClaim":{"claimName":"x"}}]"#,
            ),
            None,
        );
        refused_by(&pod("", r#""volumes":[{"name":"n","nfs":{"server":"x","path":"/"}}]"#), None, Check::VolumeTypes, "volume 'n' is of type nfs");
        // hostPath is host-path's to refuse, at both levels, so that exempting it is enough.
        let host = pod("", r#""volumes":[{"name":"root","hostPath":{"path":"/"}}]"#);
        assert_eq!(run(&host, None, Level::Restricted, Exemptions::default().with(Check::HostPath)), Ok(()));
    }

    #[test]
    fn restricted_needs_allow_privilege_escalation_false_on_every_container() {
        refused_by(
            &pod("", "").replace(r#""allowPrivilegeEscalation":false,"#, ""),
            None,
            Check::PrivilegeEscalation,
            "container 'main' does not set securityContext.allowPrivilegeEscalation: false",
        );
        refused_by(
            &pod("", "").replace(r#""allowPrivilegeEscalation":false"#, r#""allowPrivilegeEscalation":true"#),
            None,
            Check::PrivilegeEscalation,
            "to true",
        );
    }

    #[test]
    fn run_as_non_root_is_inherited_from_the_pod_and_a_container_may_not_override_it_to_false() {
        let unset = pod("", "").replace(r#""runAsNonRoot":true,"#, "");
        refused_by(&unset, None, Check::RunningAsNonRoot, "neither the pod nor container 'main' sets securityContext.runAsNonRoot: true");
        let inherited = format!(r#"{},"securityContext":{{"runAsNonRoot":true}}}}"#, unset.trim_end_matches('}'));
        passes(&inherited, None);
        // The pod says true; the container overrides it with false.
        let overridden = pod("", r#""securityContext":{"runAsNonRoot":true}"#).replace(r#""runAsNonRoot":true,"seccomp"#, r#""runAsNonRoot":false,"seccomp"#);
        refused_by(&overridden, None, Check::RunningAsNonRoot, "container 'main' sets securityContext.runAsNonRoot to false");
        // A pod-level false is refused even when every container says true.
        refused_by(
            &pod("", r#""securityContext":{"runAsNonRoot":false}"#),
            None,
            Check::RunningAsNonRoot,
            "the pod sets securityContext.runAsNonRoot to false",
        );
    }

    #[test]
    fn run_as_user_zero_is_refused_at_pod_and_container_level() {
        passes(&pod(r#""runAsUser":1000"#, r#""securityContext":{"runAsUser":1000}"#), None);
        refused_by(&pod(r#""runAsUser":0"#, ""), None, Check::RunningAsNonRootUser, "container 'main' sets securityContext.runAsUser to 0");
        refused_by(&pod(r#""runAsUser":1000"#, r#""securityContext":{"runAsUser":0}"#), None, Check::RunningAsNonRootUser, "the pod sets");
    }

    #[test]
    fn an_empty_pod_passes_baseline_and_a_pod_without_containers_passes_restricted() {
        assert_eq!(check(None, None, Level::Baseline, Exemptions::default()), Ok(()));
        assert_eq!(run(r#"{"containers":[]}"#, None, Level::Restricted, Exemptions::default()), Ok(()));
        let bare = r#"{"containers":[{"name":"main","image":"x"}]}"#;
        assert_eq!(run(bare, None, Level::Baseline, Exemptions::default()), Ok(()));
        assert_eq!(run(bare, None, Level::Restricted, Exemptions::default()).unwrap_err().check, Check::PrivilegeEscalation);
    }

    #[test]
    fn exempting_a_baseline_check_leaves_its_restricted_twin_in_force() {
        let unconfined = pod("", "").replace("RuntimeDefault", "Unconfined");
        let e = run(&unconfined, None, Level::Restricted, Exemptions::default().with(Check::Seccomp)).unwrap_err();
        assert_eq!(e.check, Check::SeccompRestricted);
    }

    #[test]
    fn a_miscased_container_list_or_volume_list_is_checked_as_the_api_server_may_read_it() {
        let e = run(r#"{"Containers":[{"name":"main","securityContext":{"privileged":true}}]}"#, None, Level::Baseline, Exemptions::default()).unwrap_err();
        assert_eq!(e.check, Check::Privileged);
        let e = run(r#"{"containers":[],"Volumes":[{"name":"root","hostPath":{"path":"/"}}]}"#, None, Level::Baseline, Exemptions::default()).unwrap_err();
        assert_eq!(e.check, Check::HostPath);
    }

    #[test]
    fn a_container_list_that_is_not_a_list_is_still_checked() {
        let e = run(r#"{"containers":{"name":"main","securityContext":{"privileged":true}}}"#, None, Level::Baseline, Exemptions::default()).unwrap_err();
        assert_eq!(e.check, Check::Privileged);
    }
}
