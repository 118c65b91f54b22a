//! Portico VRRP.
