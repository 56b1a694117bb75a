//! Escalation hot spots (`cargo bench -p escalator-escalation`): building one
//! conference INVITE with 2 and with 20 invitees, and one policy decision.

use criterion::{criterion_group, criterion_main, Criterion};
use escalator_escalation::invite::{build, ConferenceInvite, PeerDialog};
use escalator_escalation::policy::{Policy, Subject};
use std::hint::black_box;

const OFFER: &str = "v=0\r\no=alice 2890844526 2890844527 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://192.0.2.10:7654/iau39soe2843z;tcp\r\n";

fn bench(c: &mut Criterion) {
    let peer = PeerDialog {
        uri: "<sip:bob@example.com>".into(),
        call_id: "2xTb9vxSit55XU7p8@escalator".into(),
        peer_tag: "bob-tag-1".into(),
        our_tag: "host-tag-2".into(),
    };
    for n in [2usize, 20] {
        let invitees: Vec<String> = (0..n).map(|i| format!("sip:user{i}@example.com")).collect();
        c.bench_function(&format!("build conference INVITE, {n} invitees"), |b| {
            b.iter(|| {
                build(black_box(&ConferenceInvite {
                    factory_uri: "sip:conference-factory@ims.example.com",
                    from: "\"Alice\" <sip:alice@example.com>",
                    invitees: &invitees,
                    peer: &peer,
                    sdp_offer: OFFER.as_bytes(),
                    boundary: "escalator-1-2",
                    max_group_size: 50,
                }))
                .unwrap()
            })
        });
    }
    let policy = Policy::parse(include_str!("../../../policies/two-domains.toml")).unwrap();
    let subject = Subject {
        user: "sip:alice@operator.example".into(),
        user_agent: Some("OldIM/1.2".into()),
        supported: vec!["timer".into()],
        contact_features: vec!["+g.oma.sip-im".into()],
    };
    c.bench_function("policy decision for one user", |b| {
        b.iter(|| policy.decide(black_box(&subject)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
