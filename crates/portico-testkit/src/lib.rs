//! Portico test support.
