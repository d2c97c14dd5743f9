//! The OCI container lifecycle and its state directory.
