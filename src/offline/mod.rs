//! `offline-install`: carry the agent image, the runner image, the chart (as the OCI
//! artifact Helm pushes) and the TF module repository (as a git bundle) across an air gap
//! in ONE file, and mirror them into an internal OCI registry and Git service.
//!
//! The bundle is a plain tar holding, in order: the static tool itself
//! (`offline-install`), an OCI image layout (`oci/`), the module's git bundle
//! (`module/module.bundle`), `manifest.json` (what is inside, with digests) and
//! `SHA256SUMS` (every other entry). Blobs are read straight from the tar by offset, so
//! nothing is unpacked on the far side; the tar may be cut into parts for removable media
//! ([`parts`]), and may hold only what an earlier bundle does not ([`differential`]).
//! Blobs are uploaded in chunks and an interrupted upload resumes ([`upload`]), several at
//! once ([`parallel`]). Each artifact's attachments (cosign signatures, SBOMs, OCI
//! referrers: [`attachment`]) travel with it; `verify --key` checks the cosign signatures
//! offline ([`signature`]). Not supported: cross-repository mounts.

pub(crate) mod attachment;
pub(crate) mod bundle;
pub mod cli;
pub(crate) mod differential;
pub mod digest;
pub(crate) mod document;
pub mod graph;
pub(crate) mod parallel;
pub(crate) mod parts;
pub mod registry;
pub(crate) mod signature;
pub mod tar;
pub(crate) mod upload;
