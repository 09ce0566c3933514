//! The Kubernetes platform: manifests for the services and the program, and deploying,
//! running and deleting them with `kubectl`.

pub mod kubectl;
pub mod manifests;
