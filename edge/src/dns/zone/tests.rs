//! Table-driven tests of the zone logic: one snapshot, many questions.

use std::collections::BTreeMap;

use postern_schema::api::{Hostname, HostnameSpec, Route, Tunnel, TunnelSpec};
use postern_schema::ids::TunnelId;

use super::*;

fn tunnel(name: &str, labels: &[(&str, &str)]) -> Tunnel {
    Tunnel {
        id: TunnelId::new_random(),
        spec: TunnelSpec {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        version: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        connections: 0,
        token: None,
    }
}

fn hostname(name: &str, tunnel_id: Option<TunnelId>, routes: Option<Vec<Route>>) -> Hostname {
    Hostname {
        spec: HostnameSpec {
            tls_passthrough: None,
            hostname: name.into(),
            service: "http://localhost:4000".into(),
            tunnel_id,
            routes,
            policy_ids: Vec::new(),
            paths: Vec::new(),
            origin: None,
        },
        addresses: Vec::new(),
        version: 1,
        created_at: "2026-01-01T00:00:00Z".into(),
        certificate: None,
    }
}

fn route(key: &str, value: &str) -> Route {
    Route {
        selector: BTreeMap::from([(key.to_string(), value.to_string())]),
        weight: 50,
        max_error_rate: None,
    }
}

fn fixture() -> (Snapshot, ZoneConfig) {
    let web = tunnel("web", &[("release", "stable"), ("app", "web")]);
    let canary = tunnel("canary", &[("release", "canary")]);
    let lonely = tunnel("lonely", &[]);
    let hostnames = [
        hostname("app.example.com", Some(web.id), None),
        hostname(
            "split.example.com",
            None,
            Some(vec![route("release", "stable"), route("release", "canary")]),
        ),
        hostname("deep.a.example.com", Some(lonely.id), None),
        hostname(
            "nobody.example.com",
            None,
            Some(vec![route("release", "gone")]),
        ),
        hostname("api.dev.example.com", Some(web.id), None),
        hostname("stale.example.net", Some(web.id), None),
    ];
    let snapshot = Snapshot {
        revision: 42,
        tunnels: [web, canary, lonely]
            .into_iter()
            .map(|t| (t.id, t))
            .collect(),
        hostnames: hostnames
            .into_iter()
            .map(|h| (h.spec.hostname.clone(), h))
            .collect(),
        policies: BTreeMap::new(),
        tcp_services: BTreeMap::new(),
        passthrough: false,
    };
    let config = ZoneConfig::new(
        &["example.com".into(), "dev.example.com".into()],
        &["127.0.0.1".parse().expect("ip"), "::1".parse().expect("ip")],
    );
    (snapshot, config)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("test name")
}

fn section(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), record_data(r)))
        .collect()
}

/// Question, type, response code, answer section, authority section.
type Case<'a> = (
    &'a str,
    RecordType,
    ResponseCode,
    &'a [&'a str],
    &'a [&'a str],
);

#[test]
fn questions_get_the_records_the_catalog_implies() {
    let (snapshot, config) = fixture();
    let view = ZoneView::build(&snapshot, &config);
    use RecordType as T;
    use ResponseCode as R;
    let soa_com = "example.com. SOA ns.example.com. hostmaster.example.com. 42 3600 600 604800 30";
    let soa_dev = "dev.example.com. SOA ns.dev.example.com. hostmaster.dev.example.com. 42 3600 600 604800 30";
    let table: &[Case<'_>] = &[
        (
            "app.example.com.",
            T::A,
            R::NoError,
            &["app.example.com. A 127.0.0.1"],
            &[],
        ),
        (
            "APP.Example.COM.",
            T::A,
            R::NoError,
            &["app.example.com. A 127.0.0.1"],
            &[],
        ),
        (
            "app.example.com.",
            T::AAAA,
            R::NoError,
            &["app.example.com. AAAA ::1"],
            &[],
        ),
        (
            "app.example.com.",
            T::TXT,
            R::NoError,
            &["app.example.com. TXT \"tunnel=web app=web release=stable\""],
            &[],
        ),
        (
            "split.example.com.",
            T::TXT,
            R::NoError,
            &[
                "split.example.com. TXT \"tunnel=canary release=canary\" \"tunnel=web app=web release=stable\"",
            ],
            &[],
        ),
        (
            "deep.a.example.com.",
            T::TXT,
            R::NoError,
            &["deep.a.example.com. TXT \"tunnel=lonely\""],
            &[],
        ),
        // ANY: one record set (RFC 8482), not all of them.
        (
            "app.example.com.",
            T::ANY,
            R::NoError,
            &["app.example.com. A 127.0.0.1"],
            &[],
        ),
        // NODATA: the name exists, the type does not.
        ("app.example.com.", T::MX, R::NoError, &[], &[soa_com]),
        ("nobody.example.com.", T::TXT, R::NoError, &[], &[soa_com]),
        (
            "nobody.example.com.",
            T::A,
            R::NoError,
            &["nobody.example.com. A 127.0.0.1"],
            &[],
        ),
        // An empty non-terminal exists.
        ("a.example.com.", T::A, R::NoError, &[], &[soa_com]),
        // NXDOMAIN, with the SOA for negative caching.
        ("nope.example.com.", T::A, R::NXDomain, &[], &[soa_com]),
        ("x.app.example.com.", T::A, R::NXDomain, &[], &[soa_com]),
        ("ns.example.com.", T::TXT, R::NoError, &[], &[soa_com]),
        // The apex.
        ("example.com.", T::SOA, R::NoError, &[soa_com], &[]),
        (
            "Example.Com.",
            T::NS,
            R::NoError,
            &["example.com. NS ns.example.com."],
            &[],
        ),
        ("example.com.", T::A, R::NoError, &[], &[soa_com]),
        (
            "ns.example.com.",
            T::A,
            R::NoError,
            &["ns.example.com. A 127.0.0.1"],
            &[],
        ),
        (
            "ns.example.com.",
            T::AAAA,
            R::NoError,
            &["ns.example.com. AAAA ::1"],
            &[],
        ),
        // A nested zone answers for its own names.
        (
            "api.dev.example.com.",
            T::A,
            R::NoError,
            &["api.dev.example.com. A 127.0.0.1"],
            &[],
        ),
        ("nope.dev.example.com.", T::A, R::NXDomain, &[], &[soa_dev]),
        ("dev.example.com.", T::SOA, R::NoError, &[soa_dev], &[]),
        // Outside every zone.
        ("example.net.", T::A, R::Refused, &[], &[]),
        ("stale.example.net.", T::A, R::Refused, &[], &[]),
        ("badexample.com.", T::A, R::Refused, &[], &[]),
        ("com.", T::NS, R::Refused, &[], &[]),
        (".", T::NS, R::Refused, &[], &[]),
        // Zone transfers are not offered.
        ("example.com.", T::AXFR, R::Refused, &[], &[]),
    ];
    for (question, qtype, rcode, answers, authorities) in table {
        let answer = view.answer(&name(question), *qtype, DNSClass::IN);
        let what = format!("{question} {qtype}");
        assert_eq!(answer.rcode, *rcode, "{what}");
        assert_eq!(section(&answer.answers), *answers, "{what}");
        assert_eq!(section(&answer.authorities), *authorities, "{what}");
        assert_eq!(answer.authoritative, *rcode != R::Refused, "{what}");
    }
}

#[test]
fn any_is_answered_with_one_record_set() {
    let (snapshot, config) = fixture();
    let view = ZoneView::build(&snapshot, &config);
    let soa_com = "example.com. SOA ns.example.com. hostmaster.example.com. 42 3600 600 604800 30";
    let table: &[(&str, &[&str], &[&str])] = &[
        // A hostname: its addresses, without the AAAA and TXT sets beside them.
        (
            "split.example.com.",
            &["split.example.com. A 127.0.0.1"],
            &[],
        ),
        // The apex: its SOA, without the NS set and the name server's addresses.
        ("example.com.", &[soa_com], &[]),
        ("ns.example.com.", &["ns.example.com. A 127.0.0.1"], &[]),
        // A name without records stays NODATA, and a missing one NXDOMAIN.
        ("a.example.com.", &[], &[soa_com]),
        ("nope.example.com.", &[], &[soa_com]),
    ];
    for (question, answers, authorities) in table {
        for class in [DNSClass::IN, DNSClass::ANY] {
            let answer = view.answer(&name(question), RecordType::ANY, class);
            assert_eq!(section(&answer.answers), *answers, "{question}");
            assert_eq!(section(&answer.authorities), *authorities, "{question}");
            assert!(answer.additionals.is_empty(), "{question}");
        }
    }
    // With IPv6 addresses only, the AAAA set is the one.
    let config = ZoneConfig::new(
        &["example.com".into()],
        &["2001:db8::7".parse().expect("ip")],
    );
    let view = ZoneView::build(&snapshot, &config);
    let answer = view.answer(&name("app.example.com."), RecordType::ANY, DNSClass::IN);
    assert_eq!(
        section(&answer.answers),
        ["app.example.com. AAAA 2001:db8::7"]
    );
    // Without any address, the TXT set.
    let view = ZoneView::build(&snapshot, &ZoneConfig::new(&["example.com".into()], &[]));
    let answer = view.answer(&name("deep.a.example.com."), RecordType::ANY, DNSClass::IN);
    assert_eq!(
        section(&answer.answers),
        ["deep.a.example.com. TXT \"tunnel=lonely\""]
    );
}

#[test]
fn ns_answers_carry_the_name_server_addresses() {
    let (snapshot, config) = fixture();
    let view = ZoneView::build(&snapshot, &config);
    let answer = view.answer(&name("example.com."), RecordType::NS, DNSClass::IN);
    assert_eq!(
        section(&answer.additionals),
        ["ns.example.com. A 127.0.0.1", "ns.example.com. AAAA ::1"]
    );
}

#[test]
fn other_classes_are_refused() {
    let (snapshot, config) = fixture();
    let view = ZoneView::build(&snapshot, &config);
    let answer = view.answer(&name("app.example.com."), RecordType::A, DNSClass::CH);
    assert_eq!(answer.rcode, ResponseCode::Refused);
    let answer = view.answer(&name("app.example.com."), RecordType::A, DNSClass::ANY);
    assert_eq!(answer.rcode, ResponseCode::NoError);
}

#[test]
fn a_family_without_addresses_is_nodata() {
    let (snapshot, _) = fixture();
    let config = ZoneConfig::new(&["example.com".into()], &["192.0.2.7".parse().expect("ip")]);
    let view = ZoneView::build(&snapshot, &config);
    let a = view.answer(&name("app.example.com."), RecordType::A, DNSClass::IN);
    assert_eq!(section(&a.answers), ["app.example.com. A 192.0.2.7"]);
    let aaaa = view.answer(&name("app.example.com."), RecordType::AAAA, DNSClass::IN);
    assert_eq!(aaaa.rcode, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    assert_eq!(aaaa.authorities.len(), 1);
}

#[test]
fn long_label_lists_continue_in_the_next_string() {
    let long_value = "v".repeat(63);
    let labels: Vec<(String, String)> = (0..8)
        .map(|i| (format!("key-number-{i}"), long_value.clone()))
        .collect();
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let big = tunnel("big", &labels);
    let host = hostname("big.example.com", Some(big.id), None);
    let snapshot = Snapshot {
        revision: 1,
        tunnels: BTreeMap::from([(big.id, big)]),
        hostnames: BTreeMap::from([(host.spec.hostname.clone(), host)]),
        policies: BTreeMap::new(),
        tcp_services: BTreeMap::new(),
        passthrough: false,
    };
    let config = ZoneConfig::new(&["example.com".into()], &[]);
    let view = ZoneView::build(&snapshot, &config);
    let answer = view.answer(&name("big.example.com."), RecordType::TXT, DNSClass::IN);
    let RData::TXT(txt) = &answer.answers[0].data else {
        panic!("expected TXT, got {:?}", answer.answers);
    };
    assert!(txt.txt_data.len() > 1);
    assert!(txt.txt_data.iter().all(|s| s.len() <= 255));
    let joined: Vec<u8> = txt
        .txt_data
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    assert!(String::from_utf8_lossy(&joined).starts_with("tunnel=big key-number-0="));
}

#[test]
fn records_list_every_answer_in_name_order() {
    let (snapshot, config) = fixture();
    let view = ZoneView::build(&snapshot, &config);
    let listed = section(&view.records());
    let com = "example.com. SOA ns.example.com. hostmaster.example.com. 42 3600 600 604800 30";
    let dev = "dev.example.com. SOA ns.dev.example.com. hostmaster.dev.example.com. 42 3600 600 604800 30";
    let expected = [
        com,
        "example.com. NS ns.example.com.",
        "deep.a.example.com. A 127.0.0.1",
        "deep.a.example.com. AAAA ::1",
        "deep.a.example.com. TXT \"tunnel=lonely\"",
        "app.example.com. A 127.0.0.1",
        "app.example.com. AAAA ::1",
        "app.example.com. TXT \"tunnel=web app=web release=stable\"",
        dev,
        "dev.example.com. NS ns.dev.example.com.",
        "api.dev.example.com. A 127.0.0.1",
        "api.dev.example.com. AAAA ::1",
        "api.dev.example.com. TXT \"tunnel=web app=web release=stable\"",
        "ns.dev.example.com. A 127.0.0.1",
        "ns.dev.example.com. AAAA ::1",
        "nobody.example.com. A 127.0.0.1",
        "nobody.example.com. AAAA ::1",
        "ns.example.com. A 127.0.0.1",
        "ns.example.com. AAAA ::1",
        "split.example.com. A 127.0.0.1",
        "split.example.com. AAAA ::1",
        "split.example.com. TXT \"tunnel=canary release=canary\" \"tunnel=web app=web release=stable\"",
    ];
    assert_eq!(listed, expected);
    // Each one is what a question for it answers.
    for record in view.records() {
        let answer = view.answer(&record.name, record.record_type(), DNSClass::IN);
        assert!(answer.answers.contains(&record), "{record}");
    }
}

#[test]
fn the_serial_follows_the_catalog_revision() {
    let (mut snapshot, config) = fixture();
    snapshot.revision = (1 << 32) + 7;
    let view = ZoneView::build(&snapshot, &config);
    let answer = view.answer(&name("example.com."), RecordType::SOA, DNSClass::IN);
    let RData::SOA(soa) = &answer.answers[0].data else {
        panic!("expected SOA");
    };
    assert_eq!(soa.serial, 7);
}
