//! Route actions other than proxying: static files, redirects and fixed responses.
pub mod redirect;
pub mod respond;
pub mod static_files;
