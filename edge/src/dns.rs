//! Authoritative DNS for the edge's zones, over UDP and TCP, answered from the catalog snapshot:
//! `zone` decides what a question's answer is, `server` speaks the wire (with `tcp`, the TCP
//! side with its connection cap), and `rate_limit` keeps the edge from being a reflector.

mod rate_limit;
mod server;
mod tcp;
mod zone;

pub(crate) use rate_limit::RateLimitConfig;
pub(crate) use server::{DnsLimits, Sockets, serve};
pub(crate) use tcp::TcpConfig;
pub(crate) use zone::{ZoneConfig, ZoneView, record_data};
