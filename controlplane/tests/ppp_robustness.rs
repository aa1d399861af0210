//! No frame from the network makes a PppLink panic, in any phase: random
//! bytes behind every protocol we know (and some we do not), fed to a
//! server and a client that are part-way through bringing a link up.

// Test code throughout (helpers included), so the workspace's test
// allowances for unwrap/expect/panic apply to the whole file.
#![cfg(test)]

use core::time::Duration;

use controlplane::ppp::{Credentials, PppConfig, PppLink, Role};
use controlplane::time::Instant;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const PROTOCOLS: [u16; 9] = [
    0xc021, 0xc023, 0xc223, 0x8021, 0x8057, 0x0021, 0x0057, 0x80fd, 0x0001,
];

/// A server and a client, run `steps` exchanges into their negotiation.
fn links(steps: usize) -> (PppLink, PppLink) {
    let now = Instant::ZERO;
    let mut server = PppLink::new(
        Role::Server,
        PppConfig::server(),
        Box::new(ChaCha8Rng::seed_from_u64(1)),
    );
    let mut client = PppLink::new(
        Role::Client,
        PppConfig::client(Credentials {
            username: b"u".to_vec(),
            password: b"p".to_vec(),
        }),
        Box::new(ChaCha8Rng::seed_from_u64(2)),
    );
    server.open(now);
    client.open(now);
    for _ in 0..steps {
        if let Some(f) = server.poll_transmit(now) {
            client.handle_frame(now, &f);
        }
        if let Some(f) = client.poll_transmit(now) {
            server.handle_frame(now, &f);
        }
        while let Some(e) = server.poll_event() {
            if let controlplane::ppp::Event::Authenticate(_) = e {
                server.auth_verdict(now, true);
            }
        }
    }
    (server, client)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_frames_never_panic(
        steps in 0usize..12,
        frames in proptest::collection::vec(
            (0usize..PROTOCOLS.len(), any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40)),
            1..8,
        ),
    ) {
        let (mut server, mut client) = links(steps);
        let mut now = Instant::ZERO;
        for (protocol, address_control, body) in frames {
            let mut f = Vec::new();
            if address_control {
                f.extend_from_slice(&[0xff, 0x03]);
            }
            f.extend_from_slice(&PROTOCOLS[protocol].to_be_bytes());
            f.extend_from_slice(&body);
            server.handle_frame(now, &f);
            client.handle_frame(now, &f);
            // Half the time, a raw slice of garbage with no header at all.
            server.handle_frame(now, &body);
            now += Duration::from_millis(700);
            server.handle_timeout(now);
            client.handle_timeout(now);
            while server.poll_transmit(now).is_some() {}
            while client.poll_transmit(now).is_some() {}
            while server.poll_event().is_some() {}
            while client.poll_event().is_some() {}
        }
    }
}
