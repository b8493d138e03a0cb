//! Datagrams arrive from anyone who can reach the UDP port. Decoding never panics, and what
//! it accepts is exactly one message: re-encoding gives the same bytes (no second encoding of
//! a message), and decoding those gives the same message again.
#![no_main]

use flotilla_game::wire::{Datagram, MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(datagram) = Datagram::decode(data) else {
        return;
    };
    assert!(
        data.len() <= MAX_DATAGRAM,
        "accepted a datagram of {} bytes",
        data.len()
    );
    let encoded = datagram.encode();
    assert_eq!(encoded, data, "re-encoding {datagram:?} gives other bytes");
    assert_eq!(Datagram::decode(&encoded), Ok(datagram));
});
