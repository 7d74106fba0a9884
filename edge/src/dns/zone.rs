//! The edge's zones as DNS data: which names exist in a catalog snapshot and what they answer.
//! Pure: a [`ZoneView`] is built from one snapshot and the edge's settings, and
//! [`ZoneView::answer`] turns one question into the records and the response code.
//!
//! What exists in each zone:
//! - the apex: `SOA` (serial = catalog revision) and `NS ns.<zone>`;
//! - `ns.<zone>`: `A`/`AAAA`, the edge's public addresses;
//! - every hostname: `A`/`AAAA` (the public addresses, by family) and one `TXT` record with one
//!   string per tunnel that serves it, `tunnel=<name> k=v …` (labels sorted by key, tunnels by
//!   name);
//! - the names between a hostname and its zone apex, which exist without records (so
//!   `b.example.com` is NODATA, not NXDOMAIN, when `a.b.example.com` exists);
//! - while an ACME order of the edge's has a `dns-01` challenge in flight,
//!   `_acme-challenge.<name>`: one `TXT` record per answer ([`ZoneView::with_acme`]).
//!
//! Anything else in a zone is NXDOMAIN; names in no zone are REFUSED. An `ANY` question gets
//! one of the name's record sets (RFC 8482), never all of them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use postern_schema::api::{Target, Tunnel};
use postern_schema::rules;

use crate::catalog::Snapshot;

/// TTL of hostname records: short, because hostnames come and go with `terraform apply`.
pub(crate) const RECORD_TTL: u32 = 30;
/// TTL of the apex's `SOA` and `NS` and of the name server's address.
pub(crate) const ZONE_TTL: u32 = 300;
/// How long resolvers may cache NXDOMAIN and NODATA (the SOA `minimum`, RFC 2308).
pub(crate) const NEGATIVE_TTL: u32 = 30;

/// The record set an `ANY` question gets: the first of these the name has. Addresses first,
/// since they are what a client most likely wants and they are small; at the apex its SOA
/// (one record); TXT last, the largest.
const ANY_PREFERENCE: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SOA,
    RecordType::NS,
    RecordType::TXT,
];

/// The order of a name's record sets in [`ZoneView::records`].
const LISTING_ORDER: [RecordType; 5] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::TXT,
    RecordType::SOA,
    RecordType::NS,
];

/// The longest character-string a TXT record can hold.
const MAX_TXT_STRING: usize = 255;

/// What the edge serves DNS for: its zones and the addresses its names resolve to.
#[derive(Debug, Clone)]
pub(crate) struct ZoneConfig {
    zones: Vec<ZoneApex>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
}

#[derive(Debug, Clone)]
struct ZoneApex {
    /// Lowercase, no trailing dot: `example.com`.
    text: String,
    apex: Name,
    ns: Name,
    hostmaster: Name,
}

impl ZoneConfig {
    /// Zones are lowercase domain names (checked at start-up); entries that are not valid DNS
    /// names are left out with an error log.
    pub(crate) fn new(zones: &[String], addresses: &[IpAddr]) -> Self {
        let mut apexes: Vec<ZoneApex> = zones
            .iter()
            .filter_map(|zone| {
                let text = zone.trim_end_matches('.').to_ascii_lowercase();
                let names = (
                    Name::from_ascii(format!("{text}.")),
                    Name::from_ascii(format!("ns.{text}.")),
                    Name::from_ascii(format!("hostmaster.{text}.")),
                );
                match names {
                    (Ok(apex), Ok(ns), Ok(hostmaster)) => Some(ZoneApex {
                        text,
                        apex,
                        ns,
                        hostmaster,
                    }),
                    _ => {
                        tracing::error!(zone = %zone, "not a DNS name; not serving this zone");
                        None
                    }
                }
            })
            .collect();
        // Longest first, so that a nested zone wins over its parent.
        apexes.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.text.cmp(&b.text)));
        apexes.dedup_by(|a, b| a.text == b.text);
        Self {
            zones: apexes,
            v4: Vec::new(),
            v6: Vec::new(),
        }
        .with_addresses(addresses)
    }

    /// The same zones, answering `addresses`.
    pub(crate) fn with_addresses(&self, addresses: &[IpAddr]) -> Self {
        Self {
            zones: self.zones.clone(),
            v4: addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })
                .collect(),
            v6: addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V6(v6) => Some(*v6),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        }
    }

    /// The zone `name` (lowercase, no trailing dot) belongs to: the longest one containing it.
    fn zone_of(&self, name: &str) -> Option<usize> {
        self.zones
            .iter()
            .position(|zone| rules::in_zone(name, &zone.text))
    }
}

/// A name that exists, and what it carries.
#[derive(Debug, Default, Clone)]
struct Node {
    /// Answers `A`/`AAAA` with the public addresses (a hostname, or `ns.<zone>`).
    addresses: bool,
    /// The `TXT` strings, for a hostname with at least one tunnel.
    txt: Option<Vec<Box<[u8]>>>,
    /// The zone this name is the apex of.
    apex_of: Option<usize>,
    /// `dns-01` answers, one `TXT` record each.
    acme: Vec<String>,
}

/// Every name of every zone at one catalog revision.
#[derive(Debug)]
pub(crate) struct ZoneView {
    config: ZoneConfig,
    serial: u32,
    nodes: HashMap<String, Node>,
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    /// NOERROR, NXDOMAIN or REFUSED.
    pub(crate) rcode: ResponseCode,
    /// Set for every name inside a zone.
    pub(crate) authoritative: bool,
    /// The answer section.
    pub(crate) answers: Vec<Record>,
    /// The authority section: the zone's SOA for NXDOMAIN and NODATA.
    pub(crate) authorities: Vec<Record>,
    /// The additional section: the name server's addresses with an NS answer.
    pub(crate) additionals: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl ZoneView {
    /// Indexes `snapshot`'s hostnames under `config`'s zones. Hostnames in no zone (a zone
    /// removed from the flags since) are left out.
    pub(crate) fn build(snapshot: &Snapshot, config: &ZoneConfig) -> Self {
        let mut nodes: HashMap<String, Node> = HashMap::new();
        for (index, zone) in config.zones.iter().enumerate() {
            nodes.entry(zone.text.clone()).or_default().apex_of = Some(index);
            nodes
                .entry(format!("ns.{}", zone.text))
                .or_default()
                .addresses = true;
        }
        for (name, hostname) in &snapshot.hostnames {
            let name = name.to_ascii_lowercase();
            let Some(zone) = config.zone_of(&name) else {
                continue;
            };
            // The names between the hostname and its apex exist too (empty non-terminals).
            let apex = &config.zones[zone].text;
            let mut parent = name.as_str();
            while let Some((_, rest)) = parent.split_once('.') {
                if rest.len() <= apex.len() {
                    break;
                }
                nodes.entry(rest.to_string()).or_default();
                parent = rest;
            }
            let strings = txt_strings(&tunnels_serving(snapshot, &hostname.spec));
            let node = nodes.entry(name).or_default();
            node.addresses = true;
            if !strings.is_empty() {
                node.txt = Some(strings);
            }
        }
        Self {
            config: config.clone(),
            // Serial-number arithmetic (RFC 1982) wraps, so the low 32 bits are enough.
            serial: snapshot.revision as u32,
            nodes,
        }
    }

    /// The same view with the `dns-01` answers in flight (`_acme-challenge.<domain>` →
    /// values) for names inside the zones.
    pub(crate) fn with_acme(mut self, answers: &HashMap<String, Vec<String>>) -> Self {
        for (name, values) in answers {
            let name = name.to_ascii_lowercase();
            let Some(zone) = self.config.zone_of(&name) else {
                continue;
            };
            let apex = self.config.zones[zone].text.clone();
            let mut parent = name.as_str();
            while let Some((_, rest)) = parent.split_once('.') {
                if rest.len() <= apex.len() {
                    break;
                }
                self.nodes.entry(rest.to_string()).or_default();
                parent = rest;
            }
            self.nodes
                .entry(name)
                .or_default()
                .acme
                .extend(values.iter().cloned());
        }
        self
    }

    /// Answers one question. Names compare case-insensitively.
    pub(crate) fn answer(&self, qname: &Name, qtype: RecordType, qclass: DNSClass) -> Answer {
        let owner = qname.to_lowercase();
        let text = owner.to_ascii();
        let key = text.strip_suffix('.').unwrap_or(&text);
        let Some(zone) = self.config.zone_of(key) else {
            return Answer::refused();
        };
        if !matches!(qclass, DNSClass::IN | DNSClass::ANY)
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
        {
            // Other classes have no data here, and zone transfers are not offered.
            return Answer::refused();
        }
        // A name that exists answers for itself; one that does not, from the wildcard
        // hostname one label above it when there is one (records synthesized with the name
        // asked for, RFC 4592).
        let node = self.nodes.get(key).or_else(|| {
            let wildcard = rules::wildcard_of(key)?;
            self.nodes.get(&wildcard).filter(|node| node.addresses)
        });
        let Some(node) = node else {
            return self.negative(zone, ResponseCode::NXDomain);
        };
        let answer = if qtype == RecordType::ANY {
            // One record set, not all of them (RFC 8482, section 4.1): an ANY question is tens
            // of bytes and would otherwise be answered with every set of the name, up to the
            // UDP size cap, which makes the edge an amplifier for spoofed queries.
            ANY_PREFERENCE
                .iter()
                .map(|qtype| self.record_set(node, &owner, *qtype))
                .find(|answer| !answer.answers.is_empty())
        } else {
            Some(self.record_set(node, &owner, qtype))
        };
        match answer {
            Some(answer) if !answer.answers.is_empty() => answer,
            _ => self.negative(zone, ResponseCode::NoError),
        }
    }

    /// Every record the zones hold, in DNS name order (the apex first, each name's record sets
    /// in the order A, AAAA, TXT, SOA, NS): what the edge answers, for the status page.
    pub(crate) fn records(&self) -> Vec<Record> {
        let mut names: Vec<(&String, &Node)> = self.nodes.iter().collect();
        names.sort_by(|(a, _), (b, _)| a.rsplit('.').cmp(b.rsplit('.')));
        names
            .into_iter()
            .filter_map(|(name, node)| {
                Name::from_ascii(format!("{name}."))
                    .ok()
                    .map(|owner| (owner, node))
            })
            .flat_map(|(owner, node)| {
                LISTING_ORDER
                    .iter()
                    .flat_map(|qtype| self.record_set(node, &owner, *qtype).answers)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The record set of type `qtype` at `node` (named `owner`), with the name server's
    /// addresses beside an NS set; no answers when the node has none of that type.
    fn record_set(&self, node: &Node, owner: &Name, qtype: RecordType) -> Answer {
        let mut answer = Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        };
        match qtype {
            RecordType::A if node.addresses => {
                answer.answers.extend(self.a_records(owner, RECORD_TTL));
            }
            RecordType::AAAA if node.addresses => {
                answer.answers.extend(self.aaaa_records(owner, RECORD_TTL));
            }
            RecordType::TXT => {
                if let Some(strings) = &node.txt {
                    let txt = TXT::from_bytes(strings.iter().map(|s| s.as_ref()).collect());
                    answer.answers.push(Record::from_rdata(
                        owner.clone(),
                        RECORD_TTL,
                        RData::TXT(txt),
                    ));
                }
                for value in &node.acme {
                    // A validator must not cache an answer of an earlier attempt.
                    answer.answers.push(Record::from_rdata(
                        owner.clone(),
                        0,
                        RData::TXT(TXT::new(vec![value.clone()])),
                    ));
                }
            }
            RecordType::SOA => {
                if let Some(index) = node.apex_of {
                    answer.answers.push(self.soa(index, ZONE_TTL));
                }
            }
            RecordType::NS => {
                if let Some(index) = node.apex_of {
                    let ns = &self.config.zones[index].ns;
                    answer.answers.push(Record::from_rdata(
                        owner.clone(),
                        ZONE_TTL,
                        RData::NS(NS(ns.clone())),
                    ));
                    answer.additionals.extend(self.a_records(ns, ZONE_TTL));
                    answer.additionals.extend(self.aaaa_records(ns, ZONE_TTL));
                }
            }
            _ => {}
        }
        answer
    }

    /// NXDOMAIN or NODATA: no answers, the zone's SOA in the authority section.
    fn negative(&self, zone: usize, rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authorities: vec![self.soa(zone, NEGATIVE_TTL)],
            additionals: Vec::new(),
        }
    }

    fn soa(&self, zone: usize, ttl: u32) -> Record {
        let apex = &self.config.zones[zone];
        let soa = SOA::new(
            apex.ns.clone(),
            apex.hostmaster.clone(),
            self.serial,
            3_600,
            600,
            604_800,
            NEGATIVE_TTL,
        );
        Record::from_rdata(apex.apex.clone(), ttl, RData::SOA(soa))
    }

    fn a_records<'a>(&'a self, owner: &'a Name, ttl: u32) -> impl Iterator<Item = Record> + 'a {
        self.config
            .v4
            .iter()
            .map(move |ip| Record::from_rdata(owner.clone(), ttl, RData::A(A(*ip))))
    }

    fn aaaa_records<'a>(&'a self, owner: &'a Name, ttl: u32) -> impl Iterator<Item = Record> + 'a {
        self.config
            .v6
            .iter()
            .map(move |ip| Record::from_rdata(owner.clone(), ttl, RData::AAAA(AAAA(*ip))))
    }
}

/// The data of a record written like a zone file's RDATA (TXT strings quoted).
pub(crate) fn record_data(record: &Record) -> String {
    match &record.data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| format!("\"{}\"", String::from_utf8_lossy(s)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The tunnels behind a hostname: its tunnel, or every tunnel a route's selector matches;
/// ordered by name, each once.
fn tunnels_serving<'a>(
    snapshot: &'a Snapshot,
    spec: &postern_schema::api::HostnameSpec,
) -> Vec<&'a Tunnel> {
    let mut tunnels: BTreeMap<&str, &Tunnel> = BTreeMap::new();
    for serving in spec.servings() {
        add_tunnels(snapshot, serving.target, &mut tunnels);
    }
    tunnels.into_values().collect()
}

/// Adds the tunnels of `target` to `tunnels`, by name.
fn add_tunnels<'a>(
    snapshot: &'a Snapshot,
    target: Option<Target<'_>>,
    tunnels: &mut BTreeMap<&'a str, &'a Tunnel>,
) {
    match target {
        Some(Target::Tunnel(id)) => {
            if let Some(tunnel) = snapshot.tunnels.get(&id) {
                tunnels.insert(&tunnel.spec.name, tunnel);
            }
        }
        Some(Target::Routes(routes)) => {
            for tunnel in snapshot.tunnels.values() {
                if routes
                    .iter()
                    .any(|route| rules::selector_matches(&route.selector, &tunnel.spec.labels))
                {
                    tunnels.insert(&tunnel.spec.name, tunnel);
                }
            }
        }
        None => {}
    }
}

/// One string per tunnel, `tunnel=<name> k=v …` with labels in key order. A string longer than
/// a TXT character-string may be (255 bytes) continues in the next string.
fn txt_strings(tunnels: &[&Tunnel]) -> Vec<Box<[u8]>> {
    let mut strings = Vec::new();
    for tunnel in tunnels {
        let mut text = format!("tunnel={}", tunnel.spec.name);
        for (key, value) in &tunnel.spec.labels {
            text.push(' ');
            text.push_str(key);
            text.push('=');
            text.push_str(value);
        }
        strings.extend(text.as_bytes().chunks(MAX_TXT_STRING).map(Box::from));
    }
    strings
}

#[cfg(test)]
mod tests;
