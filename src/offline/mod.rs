//! `offline-install`: carry the agent image, the runner image, the chart (as the OCI
//! artifact Helm pushes) and the TF module repository (as a git bundle) across an air gap
//! in ONE file, and mirror them into an internal OCI registry and Git service.
//!
//! The bundle is a plain tar holding, in order: the static tool itself
//! (`offline-install`), an OCI image layout (`oci/`), the module's git bundle
//! (`module/module.bundle`), `manifest.json` (what is inside, with digests) and
//! `SHA256SUMS` (every other entry). Blobs are read straight from the tar by offset, so
//! nothing is unpacked on the far side. Blobs are uploaded in chunks and an interrupted
//! upload resumes (`upload`). Not supported: cross-repository mounts, signatures and
//! referrers (they are not copied).

pub mod bundle;
pub mod digest;
pub mod document;
pub mod graph;
pub mod parallel;
pub mod registry;
pub mod tar;
pub mod upload;
