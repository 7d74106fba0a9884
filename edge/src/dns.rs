//! Authoritative DNS for the edge's zones, over UDP and TCP, answered from the catalog snapshot:
//! `zone` decides what a question's answer is, `server` speaks the wire.

mod server;
mod zone;

pub(crate) use server::serve;
pub(crate) use zone::{ZoneConfig, ZoneView, record_data};
